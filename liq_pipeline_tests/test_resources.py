from liq_pipeline.resources import KweryResource, NewhedgeResource


def test_resource_reprs_never_show_the_secrets():
    kwery = KweryResource(api_key="sk-SENTINEL-repr", base_url="http://127.0.0.1:1")
    newhedge = NewhedgeResource(api_token="SENTINELnewhedgeREPR0000")
    for resource, secret in ((kwery, "sk-SENTINEL-repr"), (newhedge, "SENTINELnewhedgeREPR0000")):
        assert secret not in repr(resource) and secret not in str(resource)
    assert (
        repr(kwery)
        == "KweryResource(api_key='***', base_url='http://127.0.0.1:1', credit_budget=None, "
        "retry_budget_seconds=300.0)"
    )
    assert "sk-SENTINEL-repr" not in repr(kwery.get_client())

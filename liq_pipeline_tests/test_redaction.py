"""One redactor for keys, tokens and passwords, in every encoding a server might echo them."""

import html
import json
from urllib.parse import quote, quote_plus

import pytest
import requests

from liq_pipeline.redaction import Redactor, SecretsMaskedInRepr, redact_url
from liq_pipeline_tests.clients.helpers import SENTINEL

URL = "http://api.test/v1/liquidations"
NON_ASCII = "SENTINELkéy/123 ü+&x"  # é and ü (2 UTF-8 bytes), a slash, a space, + and &


def test_redactor_by_value_encoded_value_and_parameter_name() -> None:
    redact = Redactor([SENTINEL])
    encoded = requests.Request("GET", URL, params={"api-key": SENTINEL, "symbol": "BTC"})
    url = encoded.prepare().url
    assert SENTINEL not in url  # requests encodes it: redaction must catch that form too
    assert redact(url) == "http://api.test/v1/liquidations?api-key=***&symbol=BTC"
    assert redact(f"body says {SENTINEL!r}") == "body says '***'"
    assert redact("x?api_token=other-token&y=1") == "x?api_token=***&y=1"
    assert redact("GET /p?a=1&api-key=zzz HTTP/1.1") == "GET /p?a=1&api-key=*** HTTP/1.1"
    assert redact("my-api-key=zzz") == "my-api-key=zzz"  # not the parameter
    assert SENTINEL not in repr(redact)


def test_redactor_ignores_an_empty_secret() -> None:
    assert Redactor([""])("nothing to hide") == "nothing to hide"


def named_entities(secret: str) -> str:
    names = {"é": "&eacute;", "ü": "&uuml;", "/": "&sol;", "+": "&plus;", "&": "&amp;", " ": " "}
    return "".join(names.get(c, c) for c in secret)


@pytest.mark.parametrize(
    ("encoding", "form"),
    [
        ("raw", NON_ASCII),
        ("percent", quote(NON_ASCII, safe="")),
        ("percent, lower-case hex", "SENTINELk%c3%a9y%2f123%20%c3%bc%2b%26x"),
        ("plus", quote_plus(NON_ASCII)),
        ("json \\u escapes", json.dumps(NON_ASCII)[1:-1]),
        ("json upper-case hex and \\/", "SENTINELk\\u00E9y\\/123 \\u00FC+&x"),
        ("html escape", html.escape(NON_ASCII)),
        ("html decimal", "".join(f"&#{ord(c)};" for c in NON_ASCII)),
        ("html hex", "".join(f"&#x{ord(c):X};" for c in NON_ASCII)),
        ("html named", named_entities(NON_ASCII)),
        ("mixed in one occurrence", "SENTINELk%C3%A9y\\/123&#32;\\u00fc%2B&amp;x"),
    ],
)  # fmt: skip
def test_a_non_ascii_key_is_redacted_in_every_encoding_a_server_might_echo(encoding, form) -> None:
    body = '{"error": "bad key", "echo": "<<' + form + '>>"}'  # as the server wrote it
    assert Redactor([NON_ASCII])(body) == '{"error": "bad key", "echo": "<<***>>"}'


def test_characters_outside_the_basic_plane_as_json_surrogate_pairs() -> None:
    secret = "k€y😀"
    assert Redactor([secret])(json.dumps(secret)) == '"***"'
    assert Redactor([secret])(quote(secret)) == "***"


def test_a_secret_inside_another_is_replaced_whole() -> None:
    assert Redactor(["abc", "abcdef"])("x abcdef y abc") == "x *** y ***"


def test_a_password_with_a_space_in_its_percent_20_form() -> None:
    redact = Redactor(["pa ss"], param_names=())
    assert redact("postgresql://u:pa%20ss@h/db failed") == "postgresql://u:***@h/db failed"
    assert redact("postgresql://u:pa+ss@h/db") == "postgresql://u:***@h/db"


def test_urls_and_reprs_keep_secrets_out() -> None:
    assert (
        redact_url("postgresql+psycopg2://u:pw@h:5432/db")
        == "postgresql+psycopg2://u:***@h:5432/db"
    )
    assert redact_url("not a url") == "<unparseable url>"

    class Base:
        def __repr_args__(self):
            yield from (("key", "k3y"), ("url", "postgresql://u:pw@h/db"), ("n", 1))

    class Masked(SecretsMaskedInRepr, Base):
        secret_fields = ("key",)
        url_fields = ("url",)

    assert list(Masked().__repr_args__()) == [
        ("key", "***"),
        ("url", "postgresql://u:***@h/db"),
        ("n", 1),
    ]

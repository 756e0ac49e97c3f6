"""Secrets out of every text: one redactor for API keys, tokens and database passwords.

A secret can come back inside any text in whatever encoding a server, a proxy or a driver chose
to write it in: raw, percent-encoded (`%C3%A9`, `+` for a space), JSON-escaped (`\\u00e9`, `\\/`)
or as HTML entities (`&#233;`, `&#xE9;`, `&eacute;`). A `Redactor` matches each configured
secret with every character in any of these forms, mixed within one occurrence, and also
redacts the value of the secret query parameters by name, whatever its encoding.

No Dagster in here: the HTTP clients use it too.
"""

import html.entities
import re
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

REDACTED = "***"
SECRET_PARAMS = ("api-key", "api_token")

_JSON_SHORT_ESCAPES = {'"': r"\"", "\\": r"\\", "/": r"\/", "\b": r"\b", "\f": r"\f",
                       "\n": r"\n", "\r": r"\r", "\t": r"\t"}  # fmt: skip
_ENTITY_NAMES: dict[str, list[str]] = {}
for _name, _text in html.entities.html5.items():
    if len(_text) == 1:
        _ENTITY_NAMES.setdefault(_text, []).append(_name)


def _hex(digits: str) -> str:
    """A regex matching the hexadecimal `digits` in either case."""
    return "".join(f"[{d.lower()}{d.upper()}]" if d.isalpha() else d for d in digits)


def _char_pattern(char: str) -> str:
    """A regex alternation matching one character of a secret in every encoding above."""
    forms = [re.escape(char)]
    forms.append("".join(f"%{_hex(f'{byte:02x}')}" for byte in char.encode()))  # %c3%A9
    if char == " ":
        forms.append(r"\+")
    code = ord(char)
    if code > 0xFFFF:  # JSON writes astral characters as a surrogate pair
        high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        forms.append(rf"\\u{_hex(f'{high:04x}')}\\u{_hex(f'{low:04x}')}")
    else:
        forms.append(rf"\\u{_hex(f'{code:04x}')}")
    if char in _JSON_SHORT_ESCAPES:
        forms.append(re.escape(_JSON_SHORT_ESCAPES[char]))
    forms.append(rf"&#0*{code};")
    forms.append(rf"&#[xX]0*{_hex(f'{code:x}')};")
    forms.extend(re.escape(f"&{name}") for name in _ENTITY_NAMES.get(char, ()))
    return "(?:" + "|".join(forms) + ")"


def secret_pattern(secret: str) -> str:
    """A regex matching `secret` with each character in any encoding of `_char_pattern`."""
    return "".join(_char_pattern(char) for char in secret)


class Redactor:
    """Replace secrets in text, by value (in every encoding) and by query-parameter name.

    By value catches the secret wherever it appears (a body echoing it, an exception text); by
    name catches `api-key=...` even when the value is written in a way not foreseen here.
    """

    __slots__ = ("_names_re", "_values_re")

    def __init__(self, secrets: Iterable[str], param_names: Iterable[str] = SECRET_PARAMS) -> None:
        # Longest first, so a secret containing another one is replaced whole.
        values = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._values_re = (
            re.compile("|".join(secret_pattern(v) for v in values)) if values else None
        )
        names = "|".join(re.escape(name) for name in param_names)
        self._names_re = re.compile(rf"(?<![\w-])({names})=[^&\s'\"#<>)]*") if names else None

    def __call__(self, text: str) -> str:
        if self._values_re is not None:
            text = self._values_re.sub(REDACTED, text)
        if self._names_re is not None:
            text = self._names_re.sub(rf"\1={REDACTED}", text)
        return text

    def __repr__(self) -> str:
        return "Redactor(***)"


def redact_url(url: str) -> str:
    """A SQLAlchemy URL with its password hidden (for reprs and messages)."""
    import sqlalchemy as sa  # the HTTP clients use this module too; only URLs need SQLAlchemy

    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable url>"


class SecretsMaskedInRepr:
    """Mixin for Dagster resources and IO managers (pydantic models): secrets out of `repr()`.

    Dagster shows EnvVar-bound fields by the variable's name; this covers values set directly
    (tests, notebooks) and every place a repr ends up (logs, tracebacks, the UI's resource view).
    """

    secret_fields: ClassVar[tuple[str, ...]] = ()  # shown as ***
    url_fields: ClassVar[tuple[str, ...]] = ()  # shown with the password hidden

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():  # type: ignore[misc]  # pydantic's
            if name in self.secret_fields:
                yield name, REDACTED
            elif name in self.url_fields and isinstance(value, str):
                yield name, redact_url(value)
            else:
                yield name, value

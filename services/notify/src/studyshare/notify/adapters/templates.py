"""Mail and SMS texts from Jinja2 templates, one file per template and language.

A mail template has a `subject` and a `body` block (plain text); the HTML part is made from
the text (escaped, our own links made clickable), so a sender's message can never inject markup,
nor turn an address typed in a message or an exam's description into a link in our mail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import escape

from studyshare.notify.domain.model import language_or_default

_URL = re.compile(r"(https?://[^\s<]+)")


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str
    html: str


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("studyshare.notify", "templates"),
        autoescape=False,  # plain text; the HTML part escapes it  # noqa: S701
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_mail(
    template: str, language: str | None, context: dict[str, Any], link_base: str = ""
) -> RenderedMail:
    """The mail; in its HTML part, only addresses under `link_base` (ours) are links."""
    tmpl = _environment().get_template(f"{language_or_default(language)}/{template}.txt")
    ctx = tmpl.new_context(context)
    subject = " ".join("".join(tmpl.blocks["subject"](ctx)).split())
    text = "".join(tmpl.blocks["body"](ctx)).strip() + "\n"
    text = re.sub(r"\n{3,}", "\n\n", text)
    return RenderedMail(subject=subject, text=text, html=text_to_html(text, link_base))


def render_sms(template: str, language: str | None, context: dict[str, Any]) -> str:
    tmpl = _environment().get_template(f"{language_or_default(language)}/{template}.sms")
    return " ".join(tmpl.render(context).split())


def text_to_html(text: str, link_base: str = "") -> str:
    """Paragraphs of the escaped text; an address under `link_base` is a link (none without
    one), any other stays text."""

    def link(match: re.Match[str]) -> str:
        url = match.group(1)
        ours = bool(link_base) and url.startswith(link_base.rstrip("/") + "/")
        return f'<a href="{url}">{url}</a>' if ours else url

    paragraphs = []
    for block in text.strip().split("\n\n"):
        escaped = str(escape(block))
        linked = _URL.sub(link, escaped)
        paragraphs.append("<p>" + linked.replace("\n", "<br>\n") + "</p>")
    body = "\n".join(paragraphs)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>'
        f'<body style="font-family: sans-serif">\n{body}\n</body></html>\n'
    )

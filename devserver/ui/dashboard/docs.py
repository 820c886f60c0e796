"""The JSON API's documentation page (`/docs`), written from the OpenAPI document (`/openapi.json`)
with no external asset: FastAPI's own page loads Swagger UI from a CDN and is blank offline.

    FastAPI(docs_url=None, redoc_url=None)   # the dashboard router serves /docs instead
    render_docs(app.openapi())               # the page: every route, its parameters, answers, models
"""

from __future__ import annotations

from html import escape
from typing import Any

_METHODS = ("get", "post", "put", "patch", "delete")
_STYLE = """
body { font: 14px/1.5 system-ui, sans-serif; margin: 2em auto; max-width: 60em; padding: 0 1em; color: #222; }
code, .path { font-family: ui-monospace, monospace; }
section { border-top: 1px solid #ddd; padding: .6em 0; }
.method { display: inline-block; min-width: 4.5em; font-weight: 600; }
.get { color: #0a6; } .post { color: #06c; } .delete { color: #c30; } .put, .patch { color: #a60; }
table { border-collapse: collapse; margin: .3em 0; }
td, th { border: 1px solid #ddd; padding: .15em .5em; text-align: left; vertical-align: top; }
.muted { color: #666; }
"""


def render_docs(spec: dict[str, Any]) -> str:
    """An HTML page documenting every operation and model of an OpenAPI 3 document."""
    info = spec.get("info") or {}
    title = escape(str(info.get("title") or "API"))
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title} — API</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{title}</h1>",
        f"<p>{escape(str(info.get('description') or ''))}</p>",
        "<p class='muted'>The machine-readable document: <a href='/openapi.json'>/openapi.json</a>."
        " The dashboard: <a href='/'>/</a>.</p>",
        "<h2>Routes</h2>",
    ]
    for path, item in (spec.get("paths") or {}).items():
        for method in _METHODS:
            if method in item:
                parts.append(_operation(method, path, item[method]))
    schemas = (spec.get("components") or {}).get("schemas") or {}
    if schemas:
        parts.append("<h2>Models</h2>")
        parts += [_model(name, schema) for name, schema in schemas.items()]
    parts.append("</body></html>")
    return "\n".join(parts)


def _operation(method: str, path: str, op: dict[str, Any]) -> str:
    summary = escape(op.get("summary") or "")
    out = [
        f"<section id='{escape(method + path)}'><div><span class='method {method}'>{method.upper()}</span>",
        f"<span class='path'>{escape(path)}</span> <span class='muted'>{summary}</span></div>",
    ]
    if op.get("description"):
        out.append(f"<p>{escape(op['description'])}</p>")
    params = op.get("parameters") or []
    if params:
        out.append("<table><tr><th>parameter</th><th>in</th><th>type</th><th></th></tr>")
        for p in params:
            required = " (required)" if p.get("required") else ""
            schema = p.get("schema") or {}
            about = escape(str(p.get("description") or schema.get("description") or ""))
            out.append(
                f"<tr><td><code>{escape(str(p.get('name')))}</code>{required}</td>"
                f"<td>{escape(str(p.get('in')))}</td><td>{escape(_type(schema))}</td><td>{about}</td></tr>"
            )
        out.append("</table>")
    body = op.get("requestBody")
    if body:
        schema = ((body.get("content") or {}).get("application/json") or {}).get("schema") or {}
        out.append(f"<p>Body: {_linked(_type(schema))}</p>")
    answers = []
    for code, response in (op.get("responses") or {}).items():
        content = response.get("content") or {}
        kind = next(iter(content), "")
        schema = (content.get(kind) or {}).get("schema") or {}
        shape = _linked(_type(schema)) if schema else escape(kind)
        what = escape(str(response.get("description") or ""))
        answers.append(f"<li><code>{escape(str(code))}</code> {what} {shape}</li>")
    if answers:
        out.append("<ul>" + "".join(answers) + "</ul>")
    out.append("</section>")
    return "\n".join(out)


def _model(name: str, schema: dict[str, Any]) -> str:
    out = [f"<section id='model-{escape(name)}'><h3><code>{escape(name)}</code></h3>"]
    if schema.get("description"):
        out.append(f"<p>{escape(schema['description'])}</p>")
    props = schema.get("properties") or {}
    if props:
        required = set(schema.get("required") or [])
        out.append("<table><tr><th>field</th><th>type</th><th></th></tr>")
        for field, spec in props.items():
            mark = " (required)" if field in required else ""
            out.append(
                f"<tr><td><code>{escape(field)}</code>{mark}</td><td>{_linked(_type(spec))}</td>"
                f"<td>{escape(str(spec.get('description') or ''))}</td></tr>"
            )
        out.append("</table>")
    out.append("</section>")
    return "\n".join(out)


def _type(schema: dict[str, Any]) -> str:
    """A schema in a few words: `str`, `list[InvocationSummary]`, `int | null`..."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(_type(s) for s in schema[key])
    kind = schema.get("type")
    if kind == "array":
        return f"list[{_type(schema.get('items') or {})}]"
    if kind == "object" and "additionalProperties" in schema:
        extra = schema["additionalProperties"]
        return f"dict[str, {_type(extra) if isinstance(extra, dict) else 'any'}]"
    return str(kind or "any")


def _linked(text: str) -> str:
    """Model names in a type, linked to their section."""
    words = []
    for word in text.replace("[", " [ ").replace("]", " ] ").replace(",", " , ").split():
        if word[:1].isupper():
            words.append(f"<a href='#model-{escape(word)}'><code>{escape(word)}</code></a>")
        else:
            words.append(escape(word))
    return " ".join(words).replace(" [ ", "[").replace(" ]", "]").replace(" , ", ", ")

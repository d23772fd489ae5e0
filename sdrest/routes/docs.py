"""`GET /api/v1/openapi.json` (the OpenAPI document, built from the route table once per app) and `GET /api/v1/docs`
(a page that reads it and lists every operation with its parameters and schemas: no CDN, no renderer to vendor)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from sdrest import openapi
from sdrest.errors import json_response


def document(request: Request) -> dict[str, Any]:
    """The app's document with this request's base URL as its server (the rest is built once and kept)."""
    state = request.app.state
    built: dict[str, Any] | None = getattr(state, "openapi", None)
    if built is None:
        auth = state.authenticator.settings.auth if hasattr(state, "authenticator") else "none"
        built = state.openapi = openapi.build(request.app.routes, server="/", auth=auth)
    server = str(request.base_url).rstrip("/") or "/"
    return {**built, "servers": [{"url": server, "description": "this server"}]}


async def openapi_json(request: Request) -> Response:
    return json_response(document(request))


async def docs(request: Request) -> Response:
    return HTMLResponse(PAGE, headers={"Cache-Control": "no-cache"})


routes = [
    Route("/openapi.json", openapi_json, methods=["GET"]),
    Route("/docs", docs, methods=["GET"]),
]

# The page: plain DOM building (textContent only, so nothing in the document is ever parsed as HTML).
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sdrest API reference</title>
<link rel="icon" href="data:,">
<style>
  body { font: 15px/1.45 system-ui, sans-serif; margin: 0; color: #1d2127; background: #fafafa; }
  header { padding: 1rem 2rem; background: #20252c; color: #fff; }
  header h1 { margin: 0 0 .3rem; font-size: 1.4rem; }
  header p { margin: 0; color: #c9d1d9; max-width: 70rem; }
  main { padding: 1rem 2rem 4rem; max-width: 80rem; }
  input#filter { width: 100%; max-width: 30rem; padding: .4rem .6rem; font-size: 1rem; margin: .5rem 0 1rem; }
  h2 { margin: 2rem 0 .3rem; font-size: 1.15rem; }
  h2 + p { margin: 0 0 .6rem; color: #57606a; }
  details.op { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; margin: .35rem 0; }
  details.op > summary { cursor: pointer; padding: .45rem .7rem; display: flex; gap: .8rem; align-items: baseline; }
  .method { font: 600 .8rem monospace; padding: .1rem .45rem; border-radius: 4px; color: #fff; min-width: 3.6rem;
            text-align: center; background: #57606a; }
  .get { background: #0969da; } .post { background: #1a7f37; } .put { background: #9a6700; }
  .delete { background: #cf222e; } .patch { background: #8250df; }
  .path { font-family: monospace; font-weight: 600; }
  .summary { color: #57606a; }
  .body { padding: 0 1rem 1rem; border-top: 1px solid #eaeef2; }
  .body h4 { margin: .9rem 0 .3rem; font-size: .95rem; }
  table { border-collapse: collapse; font-size: .9rem; }
  td, th { border: 1px solid #d0d7de; padding: .25rem .5rem; text-align: left; vertical-align: top; }
  code, .schema { font-family: ui-monospace, monospace; font-size: .85rem; }
  .schema { margin: .2rem 0 .2rem 1rem; }
  .schema details > summary { cursor: pointer; }
  .schema details > summary > div { display: inline; }
  .muted { color: #6e7781; }
  .req { color: #cf222e; }
  #error { color: #cf222e; }
</style>
</head>
<body>
<header><h1 id="title">sdrest API reference</h1><p id="about"></p></header>
<main>
<p id="error"></p>
<input id="filter" type="search" placeholder="Filter by path, summary or tag" aria-label="Filter operations">
<div id="ops"></div>
</main>
<script>
"use strict";
let spec = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function resolve(schema) {
  const seen = new Set();
  while (schema && schema.$ref && !seen.has(schema.$ref)) {
    seen.add(schema.$ref);
    schema = schema.$ref.split("/").slice(1).reduce((at, part) => (at ? at[part] : undefined), spec);
  }
  return schema || {};
}

function typeName(schema) {
  if (schema.$ref) return schema.$ref.split("/").pop();
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (schema.anyOf) return schema.anyOf.map(typeName).join(" | ");
  if (schema.type === "array") {
    const items = schema.items || {};
    return (items.anyOf ? "(" + typeName(items) + ")" : typeName(items)) + "[]";
  }
  const limits = [];
  for (const key of ["minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems"]) {
    if (key in schema) limits.push(key + " " + schema[key]);
  }
  return (schema.type || "any") + (schema.format ? " (" + schema.format + ")" : "") +
    (limits.length ? " [" + limits.join(", ") + "]" : "");
}

function schemaTree(schema, depth) {
  const node = resolve(schema);
  const props = node.properties || {};
  const names = Object.keys(props);
  const nested = [];
  for (const part of [...(schema.anyOf || []), ...(node.items ? [node.items] : [])]) {
    if (resolve(part).properties) nested.push(part);
  }
  if (!names.length && !nested.length) return el("div", {class: "schema"}, typeName(schema));
  const box = el("div", {class: "schema"});
  if (node.description) box.append(el("div", {class: "muted"}, node.description));
  const required = new Set(node.required || []);
  for (const name of names) {
    const prop = props[name];
    const line = el("div", {}, el("code", {}, name), required.has(name) ? el("span", {class: "req"}, " *") : null,
      " ", el("span", {class: "muted"}, typeName(prop)),
      "default" in prop ? el("span", {class: "muted"}, " = " + JSON.stringify(prop.default)) : null);
    const items = prop.items || {};
    const inner = [prop, ...(prop.anyOf || []), items, ...(items.anyOf || [])].find((p) => p.$ref);
    if (inner && depth < 6) {
      const more = el("details", {}, el("summary", {}, line));
      more.addEventListener("toggle", () => {
        if (more.open && more.children.length === 1) more.append(schemaTree(inner, depth + 1));
      }, {once: false});
      box.append(more);
    } else {
      box.append(line);
    }
  }
  for (const part of nested) {
    box.append(el("div", {class: "muted"}, "one of: " + typeName(part)), schemaTree(part, depth + 1));
  }
  return box;
}

function contentBlock(content) {
  const box = el("div");
  for (const [media, value] of Object.entries(content || {})) {
    box.append(el("div", {}, el("code", {}, media)));
    if (value.schema) box.append(schemaTree(value.schema, 0));
    if (value.example !== undefined) box.append(el("pre", {class: "schema"}, JSON.stringify(value.example, null, 2)));
  }
  return box;
}

function operationBody(op) {
  const body = el("div", {class: "body"});
  if (op.description) body.append(el("p", {}, op.description));
  const role = op["x-required-role"];
  const access = op.security && !op.security.length ? " · public" : role ? " · role " + role : "";
  body.append(el("p", {class: "muted"}, "operationId " + op.operationId + access));
  if (op.parameters && op.parameters.length) {
    const table = el("table", {}, el("tr", {}, el("th", {}, "name"), el("th", {}, "in"), el("th", {}, "type"),
      el("th", {}, "description")));
    for (const p of op.parameters) {
      const name = el("td", {}, el("code", {}, p.name), p.required ? el("span", {class: "req"}, " *") : null);
      table.append(el("tr", {}, name, el("td", {}, p.in), el("td", {}, typeName(p.schema || {})),
        el("td", {}, p.description || "")));
    }
    body.append(el("h4", {}, "Parameters"), table);
  }
  if (op.requestBody) {
    body.append(el("h4", {}, "Request body" + (op.requestBody.required ? "" : " (optional)")),
      contentBlock(op.requestBody.content));
  }
  body.append(el("h4", {}, "Responses"));
  for (const [status, answer] of Object.entries(op.responses || {})) {
    body.append(el("div", {}, el("strong", {}, status), " ", answer.description || ""));
    if (answer.content) body.append(contentBlock(answer.content));
    if (answer.links) {
      body.append(el("div", {class: "muted"}, "links: " + Object.entries(answer.links)
        .map(([name, link]) => name + " → " + link.operationId).join(", ")));
    }
  }
  return body;
}

function render() {
  const wanted = document.getElementById("filter").value.trim().toLowerCase();
  const root = document.getElementById("ops");
  root.replaceChildren();
  const byTag = new Map((spec.tags || []).map((t) => [t.name, {tag: t, ops: []}]));
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags || ["other"])[0];
      const text = [method, path, op.summary || "", tag].join(" ").toLowerCase();
      if (wanted && !text.includes(wanted)) continue;
      if (!byTag.has(tag)) byTag.set(tag, {tag: {name: tag}, ops: []});
      byTag.get(tag).ops.push([method, path, op]);
    }
  }
  for (const {tag, ops} of byTag.values()) {
    if (!ops.length) continue;
    root.append(el("h2", {id: "tag-" + tag.name}, tag.name), el("p", {}, tag.description || ""));
    for (const [method, path, op] of ops) {
      const item = el("details", {class: "op", id: op.operationId},
        el("summary", {}, el("span", {class: "method " + method}, method.toUpperCase()),
          el("span", {class: "path"}, path), el("span", {class: "summary"}, op.summary || "")));
      item.addEventListener("toggle", () => {
        if (item.open && item.children.length === 1) item.append(operationBody(op));
      });
      root.append(item);
    }
  }
}

fetch("openapi.json", {credentials: "same-origin", headers: {Accept: "application/json"}})
  .then((response) => {
    if (!response.ok) throw new Error("openapi.json answered " + response.status);
    return response.json();
  })
  .then((loaded) => {
    spec = loaded;
    document.getElementById("title").textContent = spec.info.title + " " + spec.info.version + " API reference";
    document.getElementById("about").textContent = spec.info.description + " OpenAPI " + spec.openapi +
      ": openapi.json";
    document.getElementById("filter").addEventListener("input", render);
    render();
    if (location.hash) {
      const target = document.getElementById(location.hash.slice(1));
      if (target && target.tagName === "DETAILS") { target.open = true; target.scrollIntoView(); }
    }
  })
  .catch((error) => { document.getElementById("error").textContent = String(error); });
</script>
</body>
</html>
"""

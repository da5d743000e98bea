"""Every answer an e2e test receives is checked against the OpenAPI documents.

The documents are what `silo openapi` and `silo openapi --operator` print (the
same generator as GET /api/openapi.json and GET /v1/openapi.json). conftest
wraps requests' Session.send: each response is matched to its operation (the
listener by scheme, the tenant prefix /t/<slug> stripped), and its status,
media type and JSON body must be ones the operation declares. A handler that
answers outside its description fails the test that called it.
"""
import json
import re
import subprocess
import urllib.parse

import jsonschema

JSON_TYPES = ("application/json", "application/problem+json")


class Document:
    def __init__(self, doc):
        self.doc = doc
        self.components = doc.get("components", {})
        self.routes = []  # (regex, path, item); literal paths first
        for path, item in sorted(doc["paths"].items(), key=lambda kv: "{" in kv[0]):
            pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$"
            self.routes.append((re.compile(pattern), path, item))
        self.validators = {}
        self.seen = set()

    def find(self, path):
        for regex, template, item in self.routes:
            if regex.match(path):
                return template, item
        return None, None

    def validate(self, schema, body, where):
        key = json.dumps(schema, sort_keys=True)
        v = self.validators.get(key)
        if v is None:
            root = dict(schema)
            root["components"] = self.components
            v = jsonschema.Draft202012Validator(root)
            self.validators[key] = v
        errors = sorted(v.iter_errors(body), key=lambda e: list(e.absolute_path))
        if errors:
            e = errors[0]
            raise AssertionError("%s: the body does not match its schema at %s: %s\nbody: %s" % (
                where, "/".join(str(p) for p in e.absolute_path) or "(root)", e.message,
                json.dumps(body)[:600]))

    def operations(self):
        for path, item in self.doc["paths"].items():
            for method, op in item.items():
                if method != "servers":
                    yield "%s %s" % (method.upper(), path)


class Checker:
    def __init__(self, silo_bin):
        def load(*args):
            out = subprocess.run([silo_bin, "openapi", *args], capture_output=True, text=True,
                                 check=True, timeout=60)
            return Document(json.loads(out.stdout))
        self.public = load()
        self.operator = load("--operator")
        self.problem = {"$ref": "#/components/schemas/Problem"}

    def check(self, response, streamed):
        req = response.request
        if req.method == "OPTIONS" and "Access-Control-Request-Method" in req.headers:
            return  # a CORS preflight: the protocol's, answered for every route
        url = urllib.parse.urlsplit(req.url)
        doc = self.public if url.scheme == "https" else self.operator
        path = url.path
        m = re.match(r"^/t/[^/]+(/.*)$", path)
        if doc is self.public and m:
            path = m.group(1)
        where = "%s %s -> %d" % (req.method, url.path, response.status_code)
        template, item = doc.find(path)
        op = None
        if item is not None:
            op = item.get(req.method.lower())
        if op is None:
            # No operation (an unknown path or method): only a problem may answer.
            self.check_problem(doc, response, streamed, where)
            return
        doc.seen.add("%s %s" % (req.method, template))
        responses = op["responses"]
        status = str(response.status_code)
        declared = responses.get(status) or responses.get(status[0] + "XX") or \
            responses.get("default")
        if declared is None:
            raise AssertionError("%s: status %s is not in the operation's description (%s)" % (
                where, status, ", ".join(sorted(responses))))
        media = (response.headers.get("content-type") or "").split(";")[0].strip()
        content = declared.get("content")
        if not content:
            if req.method != "HEAD" and not streamed and response.content:
                raise AssertionError("%s: a body (%s) where the description has none" % (
                    where, media or "no type"))
            return
        if media not in content and "*/*" not in content:
            raise AssertionError("%s: media type %r is not one of %s" % (
                where, media, sorted(content)))
        if media in JSON_TYPES and not streamed and req.method != "HEAD":
            schema = content.get(media, content.get("*/*", {})).get("schema", {})
            doc.validate(schema, response.json(), where)

    def check_problem(self, doc, response, streamed, where):
        media = (response.headers.get("content-type") or "").split(";")[0].strip()
        if response.status_code < 400:
            raise AssertionError("%s: answered by no documented operation" % where)
        if media == "application/problem+json" and not streamed:
            doc.validate(self.problem, response.json(), where)

    def seen(self):
        """The operations answered so far: [public, operator] lists."""
        return [sorted(self.public.seen), sorted(self.operator.seen)]

    def add_seen(self, seen):
        """Counts operations another process saw (seen() of its Checker)."""
        self.public.seen.update(seen[0])
        self.operator.seen.update(seen[1])

    def unexercised(self):
        out = []
        for doc in (self.public, self.operator):
            out.extend(sorted(set(doc.operations()) - doc.seen))
        return out

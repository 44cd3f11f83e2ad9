// The bookstore scenario, written against openapi-fetch with the types
// openapi-typescript generates from Shoal's document (schema.d.ts).
//
// tests/openapi/test_generated_clients.py generates the types into a temporary
// folder, compiles this file with `tsc --strict` and runs it with Node:
//   node bookstore.js BASE_URL USERNAME PASSWORD TAG
// It prints what it saw as JSON; the test holds both clients' (this one's and
// bookstore.py's) to the same expectations.

import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

type Schemas = components["schemas"];
type ErrorBody = Schemas["Error"] | Schemas["ValidationError"];

const [baseUrl, username, password, tag] = process.argv.slice(2);
const api = createClient<paths>({ baseUrl });

function error(answer: { error?: ErrorBody; response: Response }): { status: number; code: number } {
  if (answer.error === undefined) throw new Error(`expected an error, got ${answer.response.status}`);
  return { status: answer.response.status, code: answer.error._error.code };
}

function issues(body: ErrorBody | undefined): string[] {
  if (body === undefined || !("_issues" in body) || body._issues === undefined) return [];
  return Object.keys(body._issues).sort();
}

function book(data: Schemas["books.item"] | undefined): Schemas["books.item"] {
  if (data === undefined) throw new Error("expected a book");
  return data;
}

async function main(): Promise<Record<string, unknown>> {
  const seen: Record<string, unknown> = {};

  seen.wrong_password = error(
    await api.POST("/auth/login", { body: { username, password: `${password}?` } }),
  );
  const login = await api.POST("/auth/login", { body: { username, password } });
  if (login.data === undefined || !("access_token" in login.data)) throw new Error("no token");
  seen.token_type = login.data.token_type;
  const headers = { Authorization: `Bearer ${login.data.access_token}` };

  // Create one book, then three in one request.
  const created = await api.POST("/books", {
    headers,
    body: { title: `Dune ${tag}`, year: 1965, tags: [tag], in_stock: false },
  });
  if (created.data === undefined || !("_id" in created.data)) throw new Error("no ack");
  seen.created = { status: created.response.status, location: created.response.headers.has("Location") };
  const id = created.data._id;
  const etag = created.data._etag;
  const bulk = await api.POST("/books", {
    headers,
    body: [
      { title: `Kindred ${tag}`, year: 1979, tags: [tag] },
      { title: `Solaris ${tag}`, year: 1961, tags: [tag] },
      { title: `Ubik ${tag}`, year: 1969, tags: [tag] },
    ],
  });
  if (bulk.data === undefined || !("_items" in bulk.data)) throw new Error("no bulk ack");
  seen.bulk = bulk.data._items.map((item) => ("_status" in item ? item._status : "?"));
  const invalidNew = await api.POST("/books", { headers, body: { title: "", year: -1 } });
  seen.invalid_create = { status: invalidNew.response.status, issues: issues(invalidNew.error) };

  // Read it back.
  const read = await api.GET("/books/{item_id}", { params: { path: { item_id: id } }, headers });
  const first = book(read.data);
  seen.read = {
    title: first.title,
    year: first.year,
    in_stock: first.in_stock,
    etag_header: read.response.headers.get("ETag") === `"${first._etag}"`,
  };

  // List with where, sort and pages.
  const pages: unknown[] = [];
  for (const page of [1, 2]) {
    const listed = await api.GET("/books", {
      params: { query: { where: JSON.stringify({ tags: tag }), sort: "-year", max_results: 3, page } },
      headers,
    });
    if (listed.data === undefined) throw new Error("no page");
    pages.push({
      years: listed.data._items.map((item) => item.year),
      total: listed.data._meta.total ?? null,
      next: listed.data._links.next !== undefined,
    });
  }
  seen.pages = pages;

  // A conditional PATCH: the year only; what it does not name stays as it was.
  const item = { path: { item_id: id } };
  const patched = await api.PATCH("/books/{item_id}", {
    params: { ...item, header: { "If-Match": etag } },
    headers,
    body: { year: 1966 },
  });
  if (patched.data === undefined) throw new Error("not patched");
  const newEtag = patched.data._etag;
  seen.patched = { status: patched.response.status, etag_changed: newEtag !== etag };
  const after = book((await api.GET("/books/{item_id}", { params: item, headers })).data);
  seen.after_patch = { year: after.year, in_stock: after.in_stock };

  // Typed errors: a stale ETag (412), a value the schema refuses (422).
  seen.stale = error(
    await api.PATCH("/books/{item_id}", {
      params: { ...item, header: { "If-Match": etag } },
      headers,
      body: { year: 1967 },
    }),
  );
  const invalid = await api.PATCH("/books/{item_id}", {
    params: { ...item, header: { "If-Match": newEtag } },
    headers,
    body: { year: -1 },
  });
  seen.invalid_patch = { ...error(invalid), issues: issues(invalid.error) };

  // Delete it; then it is not found (404).
  const deleted = await api.DELETE("/books/{item_id}", {
    params: { ...item, header: { "If-Match": newEtag } },
    headers,
  });
  seen.deleted = deleted.response.status;
  seen.missing = error(await api.GET("/books/{item_id}", { params: item, headers }));
  return seen;
}

main().then(
  (seen) => console.log(JSON.stringify(seen)),
  (failure: unknown) => {
    console.error(failure);
    process.exit(1);
  },
);

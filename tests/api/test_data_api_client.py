"""A real Data API client against a real `shoal serve`: the npm package
`mongodb-data-api`, installed from the npm registry into a temporary folder,
performs every action it supports, at `/action/...` and at the hosted path.

The registry must be reachable: an install that fails fails the test."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId

from shoal.auth.accounts import Accounts
from shoal.storage import open_storage
from tests.utils.data_api import APP_ID, data_api_config
from tests.utils.live import LiveServer, live_example

#: The client under test, pinned.
CLIENT = "mongodb-data-api@0.4.0"

SCRIPT = r"""
'use strict';
const { createMongoDBDataAPI } = require('mongodb-data-api');
const [base, key, database, collection] = process.argv.slice(2);

(async () => {
  const api = createMongoDBDataAPI({ apiKey: key, urlEndpoint: base });
  const tasks = api.$cluster('mongodb-atlas').$database(database).$collection(collection);
  const out = {};
  out.insertOne = await tasks.insertOne({
    document: { text: 'Do the dishes', status: 'open', due: { $date: '2022-06-07T00:00:00Z' } },
  });
  out.insertMany = await tasks.insertMany({
    documents: [
      { text: 'Mop the floor', status: 'open' },
      { text: 'Clean the windows', status: 'complete' },
    ],
  });
  out.findOne = await tasks.findOne({ filter: { _id: { $oid: out.insertOne.insertedId } } });
  out.findNothing = await tasks.findOne({ filter: { text: 'nothing' } });
  out.find = await tasks.find({ filter: { status: 'open' }, sort: { text: 1 }, limit: 10 });
  out.updateOne = await tasks.updateOne({
    filter: { text: 'Do the dishes' },
    update: { $set: { status: 'complete' } },
  });
  out.upsert = await tasks.updateOne({
    filter: { text: 'Walk the dog' },
    update: { $set: { status: 'open' } },
    upsert: true,
  });
  out.updateMany = await tasks.updateMany({
    filter: { status: 'complete' },
    update: { $set: { done: true } },
  });
  out.replaceOne = await tasks.replaceOne({
    filter: { text: 'Mop the floor' },
    replacement: { text: 'Mop the floor', status: 'complete' },
  });
  out.aggregate = await tasks.aggregate({
    pipeline: [
      { $match: { status: 'complete' } },
      { $group: { _id: '$status', count: { $sum: 1 } } },
    ],
  });
  out.deleteOne = await tasks.deleteOne({ filter: { text: 'Walk the dog' } });
  out.generic = await api.$$action('find', {
    dataSource: 'mongodb-atlas', database, collection, filter: {}, projection: { _id: 0, text: 1 },
    sort: { text: 1 },
  });
  out.deleteMany = await tasks.deleteMany({ filter: {} });
  out.findAfter = await tasks.find({ filter: {} });
  const wrong = createMongoDBDataAPI({ apiKey: 'shoal_wrong', urlEndpoint: base });
  out.wrongKey = await wrong.$cluster('mongodb-atlas').$database(database).$collection(collection)
    .find({ filter: {} }).then(() => 'resolved', (error) => ({ status: error.status }));
  console.log(JSON.stringify(out));
})().catch((error) => {
  console.error(error && error.toJSON ? JSON.stringify(error.toJSON()) : error);
  process.exit(1);
});
"""


@pytest.fixture(scope="module")
def client_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The npm client, installed from the registry into a temporary folder."""
    npm = shutil.which("npm")
    assert npm is not None, "npm is not installed (Node.js 20 with npm is needed)"
    folder = tmp_path_factory.mktemp("npm-client")
    installed = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--no-save", "--prefix", str(folder), CLIENT],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert installed.returncode == 0, f"npm install {CLIENT} failed:\n{installed.stderr}"
    (folder / "actions.js").write_text(SCRIPT, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def database() -> str:
    return f"todo_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, mongodb_uri: str, redis_url: str, database: str
) -> Iterator[LiveServer]:
    config = data_api_config(database, tasks={"roles": ["editor"]}, hosted={"roles": ["editor"]})
    with live_example(
        tmp_path_factory.mktemp("data-api"), mongodb_uri, redis_url, data_api=config
    ) as server:
        yield server


async def stored_key(live: LiveServer) -> str:
    async with open_storage(live.settings.mongodb) as storage:
        key, _ = await Accounts(storage, live.settings.auth).create_api_key("npm", ["editor"])
    return key


@pytest.mark.parametrize(
    ("prefix", "collection"),
    [("", "tasks"), (f"/app/{APP_ID}/endpoint/data/v1", "hosted")],
    ids=["action", "hosted-path"],
)
async def test_the_npm_client_performs_every_action(
    client_dir: Path, live: LiveServer, database: str, prefix: str, collection: str
) -> None:
    node = shutil.which("node")
    assert node is not None
    key = await stored_key(live)
    process = await asyncio.create_subprocess_exec(
        node,
        "actions.js",
        live.url.rstrip("/") + prefix,
        key,
        database,
        collection,
        cwd=client_dir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    out: dict[str, Any] = json.loads(stdout)

    inserted = out["insertOne"]["insertedId"]
    assert ObjectId.is_valid(inserted)
    assert [ObjectId.is_valid(i) for i in out["insertMany"]["insertedIds"]] == [True, True]
    assert out["findOne"] == {
        "document": {
            "_id": inserted,
            "text": "Do the dishes",
            "status": "open",
            "due": "2022-06-07T00:00:00.000Z",
        }
    }
    assert out["findNothing"] == {"document": None}
    assert [task["text"] for task in out["find"]["documents"]] == ["Do the dishes", "Mop the floor"]
    assert out["updateOne"] == {"matchedCount": 1, "modifiedCount": 1}
    assert out["upsert"]["matchedCount"] == 0
    assert ObjectId.is_valid(out["upsert"]["upsertedId"])
    assert out["updateMany"] == {"matchedCount": 2, "modifiedCount": 2}
    assert out["replaceOne"] == {"matchedCount": 1, "modifiedCount": 1}
    assert out["aggregate"] == {"documents": [{"_id": "complete", "count": 3}]}
    assert out["deleteOne"] == {"deletedCount": 1}
    assert out["generic"] == {
        "documents": [
            {"text": "Clean the windows"},
            {"text": "Do the dishes"},
            {"text": "Mop the floor"},
        ]
    }
    assert out["deleteMany"] == {"deletedCount": 3}
    assert out["findAfter"] == {"documents": []}
    assert out["wrongKey"] == {"status": 401}

"""`shoal from-eve`: Eve settings files translated into Shoal configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from shoal.cli.eve import load_eve_settings, translate
from shoal.config import load_settings
from tests.utils.processes import run_shoal

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "eve-migration"


def test_the_example_translation_is_the_committed_config() -> None:
    translation = translate(load_eve_settings(EXAMPLE / "settings.py"))
    committed = (EXAMPLE / "shoal.yaml").read_text(encoding="utf-8")
    assert translation.yaml() == committed, "run: shoal from-eve settings.py --output shoal.yaml"
    settings = load_settings(EXAMPLE / "shoal.yaml", env={})
    assert set(settings.resources) == {"people", "invoices", "people_by_role"}
    people = settings.resources["people"]
    assert (people.soft_delete, people.versioning, people.unique) == (True, True, ["lastname"])
    assert people.additional_lookup is not None
    assert people.additional_lookup.field == "lastname"
    aggregation = settings.resources["people_by_role"].aggregation
    assert aggregation is not None
    assert set(aggregation.variables) == {"$kind"}


def test_cerberus_rules_become_json_schema() -> None:
    settings: dict[str, Any] = {
        "DOMAIN": {
            "things": {
                "schema": {
                    "name": {"type": "string", "required": True, "empty": False, "regex": "[a-z]+"},
                    "score": {"type": "float", "min": 0, "max": 10, "nullable": True},
                    "kind": {"type": "string", "allowed": ["a", "b"], "default": "a"},
                    "when": {"type": "datetime", "readonly": True},
                    "tags": {"type": "list", "maxlength": 3, "schema": {"type": "string"}},
                    "address": {
                        "type": "dict",
                        "schema": {"city": {"type": "string", "required": True}},
                    },
                    "owner": {
                        "type": "objectid",
                        "data_relation": {"resource": "people", "embeddable": True},
                    },
                    "odd": {"type": "string", "coerce": int},
                },
                "item_url": 'regex("[a-z-]+")',
                "url": 'people/<regex("[a-f0-9]{24}"):owner>/things',
                "mongo_indexes": {"by_name": [("name", 1), ("score", -1)]},
                "cache_control": "max-age=10",
            },
            "people": {"schema": {"name": {"type": "string"}}},
        },
        "MONGO_DBNAME": "legacy",
        "MONGO_QUERY_BLACKLIST": ["$where"],
    }
    result = translate(settings)
    things = result.config["resources"]["things"]
    schema = things["schema"]
    assert schema["required"] == ["name"]
    properties = schema["properties"]
    assert properties["name"] == {"type": "string", "pattern": "^(?:[a-z]+)$", "minLength": 1}
    assert properties["score"] == {"type": ["number", "null"], "minimum": 0, "maximum": 10}
    assert properties["kind"] == {"type": "string", "enum": ["a", "b"], "default": "a"}
    assert properties["when"] == {"type": "string", "format": "date-time"}
    assert properties["tags"] == {"type": "array", "items": {"type": "string"}, "maxItems": 3}
    assert properties["address"] == {
        "type": "object",
        "required": ["city"],
        "properties": {"city": {"type": "string"}},
        "additionalProperties": False,
    }
    assert properties["owner"]["data_relation"] == {"resource": "people", "embeddable": True}
    assert properties["_id"] == {"type": "string", "pattern": "^[a-z-]+$"}
    assert things["readonly"] == ["when"]
    assert things["url"] == "people/<owner>/things"
    assert things["mongo_indexes"] == {"by_name": [["name", 1], ["score", -1]]}
    assert things["allow_regex"] is True  # $regex is not in Eve's blacklist here
    assert things["resource_methods"] == ["GET"]  # Eve's default
    assert result.config["mongodb"] == {"database": "legacy"}
    notes = "\n".join(result.notes)
    assert "things.cache_control" in notes
    assert "things.schema.odd.coerce" in notes
    load_settings(result.config, env={})


def test_the_command_prints_the_config_and_lists_what_needs_a_look(tmp_path: Path) -> None:
    result = run_shoal(["from-eve", str(EXAMPLE / "settings.py")], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["resources"]["people"]["soft_delete"] is True
    assert "note: resources.people_by_role.datasource.aggregation.variables" in result.stderr
    # Served at /people/<value> as in Eve: nothing to look at.
    assert "additional_lookup" not in result.stderr

    output = tmp_path / "shoal.yaml"
    written = run_shoal(
        ["from-eve", str(EXAMPLE / "settings.py"), "--output", str(output)], cwd=tmp_path
    )
    assert written.returncode == 0
    assert written.stdout == ""
    assert output.read_text(encoding="utf-8") == (EXAMPLE / "shoal.yaml").read_text()


def test_the_command_says_when_the_file_does_not_run_or_needs_edits(tmp_path: Path) -> None:
    assert run_shoal(["from-eve", "missing.py"], cwd=tmp_path).returncode == 2
    broken = tmp_path / "broken.py"
    broken.write_text("DOMAIN = {\n", encoding="utf-8")
    result = run_shoal(["from-eve", str(broken)], cwd=tmp_path)
    assert result.returncode == 2
    assert "did not run" in result.stderr
    dangling = tmp_path / "dangling.py"
    dangling.write_text(
        "DOMAIN = {'a': {'schema': {'b': {'type': 'objectid', "
        "'data_relation': {'resource': 'nowhere'}}}}}\n",
        encoding="utf-8",
    )
    result = run_shoal(["from-eve", str(dangling)], cwd=tmp_path)
    assert result.returncode == 1
    assert "no resource named 'nowhere'" in result.stderr


def test_eves_mongodb_goes_to_a_note_not_into_the_development_config(tmp_path: Path) -> None:
    """The translation is a development config: it is served by the embedded
    store unless told otherwise, not by a localhost:27017 that is not there."""
    settings = tmp_path / "settings.py"
    settings.write_text(
        "MONGO_HOST = 'localhost'\nMONGO_PORT = 27017\nMONGO_DBNAME = 'apitest'\n"
        "DOMAIN = {'people': {'schema': {'name': {'type': 'string'}}}}\n",
        encoding="utf-8",
    )
    result = run_shoal(["from-eve", str(settings), "--output", "shoal.yaml"], cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    written = (tmp_path / "shoal.yaml").read_text(encoding="utf-8")
    config = yaml.safe_load(written)
    assert config["environment"] == "development"
    assert config["mongodb"] == {"database": "apitest"}
    assert "mongodb://localhost:27017" not in yaml.safe_dump(config)
    note = (
        "MONGO_HOST/MONGO_PORT: this development config uses the embedded store; to serve "
        "Eve's MongoDB, set SHOAL_MONGODB_URI=mongodb://localhost:27017 (or mongodb.uri)"
    )
    assert f"note: {note}" in result.stderr.splitlines()
    assert f"#   - {note}" in written.splitlines()


def test_a_mongo_uri_is_noted_without_its_password_and_names_the_database(
    tmp_path: Path,
) -> None:
    settings = tmp_path / "settings.py"
    settings.write_text(
        "MONGO_URI = 'mongodb://eve:s3cret@db.example:27017/legacy?authSource=admin'\n"
        "DOMAIN = {'people': {'schema': {'name': {'type': 'string'}}}}\n",
        encoding="utf-8",
    )
    result = run_shoal(["from-eve", str(settings)], cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["mongodb"] == {"database": "legacy"}
    assert "s3cret" not in result.stdout + result.stderr
    assert (
        "note: MONGO_URI: this development config uses the embedded store; to serve Eve's "
        "MongoDB, set SHOAL_MONGODB_URI=mongodb://eve:…@db.example:27017/legacy?authSource=admin "
        "(or mongodb.uri)"
    ) in result.stderr.splitlines()


def test_eves_media_fields_become_files_inline_as_eve_serves_them() -> None:
    domain = {
        "people": {
            "schema": {
                "photo": {"type": "media"},
                "address": {"type": "dict", "schema": {"scan": {"type": "media"}}},
            }
        },
        "notes": {"schema": {"text": {"type": "string"}}},
    }
    translation = translate({"DOMAIN": domain})
    resources = translation.config["resources"]
    people = resources["people"]
    assert people["schema"]["properties"]["photo"] == {"type": "string", "format": "binary"}
    # Only top-level fields hold files: a nested one stays a string, with a note.
    assert people["schema"]["properties"]["address"]["properties"]["scan"] == {"type": "string"}
    assert any("media field inside" in note for note in translation.notes)
    # Eve's default (RETURN_MEDIA_AS_BASE64_STRING) gives files inline.
    assert people["media"] == {"base64": True}
    assert "media" not in resources["notes"]
    settings = load_settings({"resources": resources, "environment": "development"}, env={})
    assert set(settings.resources["people"].media_fields) == {"photo"}
    as_urls = translate({"DOMAIN": domain, "RETURN_MEDIA_AS_URL": True})
    assert "media" not in as_urls.config["resources"]["people"]

"""An Eve 2.3 settings file: people and their invoices.

`shoal from-eve settings.py --output shoal.yaml` translates it; the shoal.yaml
beside it is that translation (a test keeps the two in step), and
docs/how-to/migrate-from-eve.md walks through it.
"""

from bson import SON

RESOURCE_METHODS = ["GET", "POST", "DELETE"]
ITEM_METHODS = ["GET", "PATCH", "PUT", "DELETE"]
PAGINATION_LIMIT = 50
PAGINATION_DEFAULT = 25

people = {
    "schema": {
        "firstname": {"type": "string", "minlength": 1, "maxlength": 40},
        "lastname": {
            "type": "string",
            "minlength": 1,
            "maxlength": 40,
            "required": True,
            "unique": True,
        },
        "role": {"type": "string", "allowed": ["author", "contributor", "copy"]},
        "born": {"type": "datetime"},
    },
    "additional_lookup": {"url": 'regex("[\\w]+")', "field": "lastname"},
    "soft_delete": True,
    "versioning": True,
}

invoices = {
    "schema": {
        "number": {"type": "integer", "required": True, "min": 1},
        "person": {
            "type": "objectid",
            "data_relation": {"resource": "people", "embeddable": True},
        },
    },
}

people_by_role = {
    "datasource": {
        "source": "people",
        "aggregation": {
            "pipeline": [
                # A client fills $kind in: ?aggregate={"$kind": "author"}
                {"$match": {"role": "$kind"}},
                {"$group": {"_id": "$role", "count": {"$sum": 1}}},
                {"$sort": SON([("count", -1), ("_id", 1)])},
            ]
        },
    },
}

DOMAIN = {"people": people, "invoices": invoices, "people_by_role": people_by_role}

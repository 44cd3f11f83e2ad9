"""The order book's rules, as event hooks (see shoal.yaml and
docs/how-to/hooks.md).

- A new order gets its ``total`` and ``placed_at`` from the server.
- A shipped order cannot change, nor be deleted.
- A change to an order's lines recomputes its total.
- Lists and reads leave cancelled orders out unless asked (``?cancelled=true``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from quart import Quart, Request

from shoal import shoal_hooks
from shoal.errors import Conflict, Forbidden


def total(lines: list[dict[str, Any]]) -> float:
    return round(sum(float(line["quantity"]) * float(line["price"]) for line in lines), 2)


def register(app: Quart) -> None:
    """Called once per worker with the app (``hooks`` in shoal.yaml)."""
    hooks = shoal_hooks(app)

    @hooks.on_insert("orders")
    async def price_new_orders(documents: list[dict[str, Any]]) -> None:
        for order in documents:
            order["total"] = total(order["lines"])
            order["placed_at"] = datetime.now(UTC)

    @hooks.on_update("orders")
    async def keep_shipped_orders(updates: dict[str, Any], original: dict[str, Any]) -> None:
        if original.get("status") == "shipped":
            raise Conflict("a shipped order cannot change")
        if "lines" in updates:
            updates["total"] = total(updates["lines"])

    # Eve's own name for the same kind of hook.
    @hooks.on("on_delete_item_orders")
    def refuse_deleting_shipped_orders(original: dict[str, Any]) -> None:
        if original.get("status") == "shipped":
            raise Forbidden("a shipped order cannot be deleted; cancel it instead")

    @hooks.on_pre_GET("orders")
    async def hide_cancelled_orders(request: Request, lookup: dict[str, Any]) -> None:
        if request.args.get("cancelled") != "true":
            lookup["status"] = {"$ne": "cancelled"}

"""What every request policy is: a step before the view that may answer in its
place, and a step after it that may change the answer, on a ``Call``.

The lean path runs the steps itself (``api/lean.py``); on the full path Quart
runs them as request hooks (``before_request``, ``after_request``), which this
base class makes from the same steps: one policy, two ways in.
"""

from __future__ import annotations

from quart import Response

from ..http.call import Answer, Call, QuartAnswer, Reply, current_call, to_response


class Policy:
    """A request policy (the app factory orders them: ``app.policies``)."""

    async def before(self, call: Call) -> Reply | None:
        """Before the view: an answer in its place, or None to go on."""
        return None

    async def after(self, call: Call, answer: Answer) -> None:
        """After the view (or an error): change the answer's headers, keep it."""
        return

    async def before_request(self) -> Response | None:
        """``before`` as Quart's before-request hook, on the current request."""
        reply = await self.before(current_call())
        return None if reply is None else to_response(reply)

    async def after_request(self, response: Response) -> Response:
        """``after`` as Quart's after-request hook, on the current request."""
        await self.after(current_call(), QuartAnswer(response))
        return response

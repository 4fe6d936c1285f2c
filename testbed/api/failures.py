"""Pure: a refused API request, answered as a Kubernetes Status object.

Raised by the API's verbs (admission.py), the option readers (options.py) and the HTTP layer;
testbed/agents/apiserver.py turns it into the HTTP answer.
"""

from __future__ import annotations


class ApiFailure(Exception):
    """A refused request, answered as a Kubernetes Status object."""

    def __init__(self, code: int, reason: str, message: str, causes: list[dict] | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.causes = code, reason, message, causes or []

    def status(self) -> dict:
        out: dict = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                     "message": self.message, "reason": self.reason, "code": self.code}
        if self.causes:
            out["details"] = {"causes": self.causes}
        return out

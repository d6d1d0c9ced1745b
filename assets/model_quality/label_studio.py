"""Label Studio's REST API: the few calls the labeling round trip makes.

The server is named by one URL carrying its API token as the password,
``http://:TOKEN@host:port`` (the legacy token, sent as ``Authorization: Token …``; a server started
by ``wv services up`` has it on; new organizations get personal access tokens only, so enable
legacy tokens under Organization → Access Token Settings on a shared server). Tasks go in with their crop inlined as a data URL, so a server on
another machine needs no access to our files; answers come back as the project's JSON export,
which ``quality.labeling.read_label_studio`` reads like a file a person exported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from foundation.redaction import display_url


class LabelStudioError(RuntimeError):
    """The server refused a call or could not be reached; the message names the call."""


@dataclass(frozen=True)
class LabelStudio:
    url: str
    timeout: float = 30.0

    @property
    def base(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}:{parts.port or 80}"

    @property
    def token(self) -> str:
        token = urlsplit(self.url).password
        if not token:
            raise LabelStudioError(
                f"{display_url(self.url)}: no API token (expected http://:TOKEN@host:port)"
            )
        return token

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = httpx.request(
                method,
                self.base + path,
                headers={"Authorization": f"Token {self.token}"},
                timeout=self.timeout,
                **kwargs,
            )
        except httpx.HTTPError as exc:
            raise LabelStudioError(f"{method} {self.base}{path}: {exc or type(exc).__name__}") from None
        if response.status_code >= 400:
            raise LabelStudioError(f"{method} {path}: HTTP {response.status_code}: {response.text[:300]}")
        return response.json() if response.content else None

    def probe(self) -> str | None:
        """None when the server answers an authenticated call; otherwise why not."""
        try:
            self._call("GET", "/api/projects/", params={"page_size": 1})
        except LabelStudioError as exc:
            return str(exc)
        return None

    def project(self, title: str, label_config: str) -> int:
        """The id of the project called ``title``, created with ``label_config`` when missing."""
        found = self._call("GET", "/api/projects/", params={"title": title, "page_size": 100})
        for project in found.get("results", []):
            if project.get("title") == title:
                return int(project["id"])
        created = self._call("POST", "/api/projects/", json={"title": title, "label_config": label_config})
        return int(created["id"])

    def projects(self) -> list[dict[str, Any]]:
        """Every project with its counts (``total_annotations_number``, ``num_tasks_with_annotations``, …)."""
        projects: list[dict[str, Any]] = []
        page = 1
        while True:
            body = self._call("GET", "/api/projects/", params={"page": page, "page_size": 100})
            projects.extend(body.get("results", []))
            if not body.get("next"):
                return projects
            page += 1

    def tasks(self, project: int) -> list[dict[str, Any]]:
        """Every task of the project (data and annotation counts), page by page."""
        tasks: list[dict[str, Any]] = []
        page = 1
        while True:
            params = {"project": project, "page": page, "page_size": 500}
            try:
                body = self._call("GET", "/api/tasks/", params=params)
            except LabelStudioError as exc:
                if "HTTP 404" in str(exc) and page > 1:  # past the last page
                    return tasks
                raise
            tasks.extend(body["tasks"])
            if len(tasks) >= int(body.get("total", 0)) or not body["tasks"]:
                return tasks
            page += 1

    def import_tasks(self, project: int, tasks: Sequence[Mapping[str, Any]]) -> list[int]:
        """Create the tasks (with their predictions); returns the new task ids."""
        if not tasks:
            return []
        body = self._call(
            "POST", f"/api/projects/{project}/import", params={"return_task_ids": "true"}, json=list(tasks)
        )
        return [int(i) for i in body.get("task_ids", [])]

    def annotate(self, task: int, result: list[dict[str, Any]]) -> int:
        """Submit an annotation as the token's user (what an annotator's Submit button does)."""
        return int(self._call("POST", f"/api/tasks/{task}/annotations/", json={"result": result})["id"])

    def export(self, project: int) -> list[dict[str, Any]]:
        """The project's tasks with their annotations, in Label Studio's JSON export format."""
        exported: list[dict[str, Any]] = self._call(
            "GET", f"/api/projects/{project}/export", params={"exportType": "JSON"}
        )
        return exported

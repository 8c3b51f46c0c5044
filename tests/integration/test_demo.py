"""The demo, end to end, through the same code as `make demo`: for the sample and for the original operator's
manifest with its own query, v2 promoted, v3 rolled back and recorded, no canary left, and the primary
serving v2 through the traffic layer."""

from __future__ import annotations

from pathlib import Path

import pytest

from devenv.demo import IMAGE, NAME, ORIGINAL_NAME, environment, tell_story

pytestmark = pytest.mark.integration


def test_the_demo_tells_the_canary_story(tmp_path: Path) -> None:
    with environment(tmp_path / "demo") as env:
        story = tell_story(env)
        assert [rollout.app for rollout in story.rollouts] == [NAME, NAME, ORIGINAL_NAME, ORIGINAL_NAME]
        for app in (NAME, ORIGINAL_NAME):
            v2, v3 = (rollout for rollout in story.rollouts if rollout.app == app)
            assert (v2.image, v2.result, v2.steps) == (f"{IMAGE}:v2", "Succeeded", [10, 20, 30, 40, 50])
            assert v3.image == f"{IMAGE}:v3"
            assert v3.result == "Failed"
            assert v3.steps[0] == 10
            assert max(v3.steps) < 50
            status = story.status(app)
            assert status["failedImages"] == [f"{IMAGE}:v3"]
            assert status["primaryImage"] == f"{IMAGE}:v2"
            failed_check = status["checks"][-1]
            assert failed_check["outcome"] == "ErrorsFound"
            # Errors are evidence even before the canary's own requests show in the window (the original's
            # query counts the primary's 5xx too), so no request count is required here.
            assert failed_check["canaryRequests"] is not None
            assert status["rollouts"][-2]["result"] == "Promoted"
            assert all(
                check["canaryRequests"] >= 1 for check in status["checks"] if check["outcome"] == "Clean"
            )
        assert story.check_world() == []
        assert story.weights() == (100, 0)
        assert story.curl("/hello") == (200, "Hello! v2")
        assert story.curl("/nothello") == (500, "NotHello! v2")
        assert env.mesh.routes().get(f"{NAME}-primary") == 100

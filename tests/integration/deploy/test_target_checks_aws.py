"""DEP-1: AWS targets added through the one door (`operations.targets.add`, what `certpilot target
add` and the UI's `target-add` call) are checked against moto_server before they are stored: a
listener or certificate ARN these credentials cannot read is refused naming the field."""

from __future__ import annotations

from datetime import timedelta

import pytest

from certpilot.adapters.deploy.factory import default_target_factory
from certpilot.core.errors import BadInputError
from certpilot.operations import targets
from certpilot.runtime import local_services
from certpilot.store.db import session_scope
from tests.integration.deploy.conftest import T, add_cert
from tests.servers.certs import make_leaf

pytestmark = pytest.mark.servers


def test_dep1_aws_targets_checked_against_the_api_before_they_are_stored(moto_server, listener, aws_ca, deploy_db,
                                                                          vault):
    svc = local_services(database_url=deploy_db, vault=vault, issuers={},
                         target_factory=default_target_factory(aws=lambda service, cfg: moto_server.client(service)))
    leaf = make_leaf(aws_ca, ["aws-check.example.test"], not_before=T, not_after=T + timedelta(days=30))
    with session_scope(deploy_db) as s:
        cid = add_cert(s, vault, leaf)
    gone = listener["arn"].rsplit("/", 1)[0] + "/0000000000000000"
    with pytest.raises(BadInputError) as bad:
        targets.add(svc, cid, "aws-elb", config={"listener_arn": gone, "mode": "default"})
    assert "listener_arn: " in bad.value.message and "nothing was stored" in bad.value.message
    missing_cert = "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
    with pytest.raises(BadInputError) as bad:
        targets.add(svc, cid, "aws-acm", config={"certificate_arn": missing_cert})
    assert "certificate_arn: " in bad.value.message
    assert targets.list_targets(svc, cid) == []
    added = targets.add(svc, cid, "aws-elb", config={"listener_arn": listener["arn"], "mode": "sni"},
                        name="alb", endpoints=[("127.0.0.1", 443, "aws-check.example.test")])
    assert [v.record.id for v in targets.list_targets(svc, cid)] == [added.record.id]
    tested = targets.test(svc, added.record.id)
    assert tested.problems == ()  # the listener is readable; nothing changed on it
    assert listener["elb"].describe_listeners(ListenerArns=[listener["arn"]])["Listeners"][0]["Certificates"] == [
        {"CertificateArn": listener["old_arn"]}]

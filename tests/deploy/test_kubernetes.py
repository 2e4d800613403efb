"""Offline checks of deploy/kubernetes/: every manifest validates against the Kubernetes
schemas (kubernetes-validate, strict: unknown fields are errors), and the Deployment keeps
the container's promises. Runs in the test process; no cluster is needed."""
from __future__ import annotations

import json
import pathlib

import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = pathlib.Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.37.0"
SECCOMP_PROFILE = "profiles/notrace-seccomp.json"


def _documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


def _one(kind: str) -> dict:
    found = [doc for _, doc in _documents() if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} in deploy/kubernetes/, found {len(found)}"
    return found[0]


def test_every_kind_is_there():
    kinds = sorted(doc["kind"] for _, doc in _documents())
    assert kinds == sorted(["Deployment", "Service", "HorizontalPodAutoscaler",
                            "PodDisruptionBudget", "NetworkPolicy"])


@pytest.mark.parametrize("name,doc", _documents(), ids=lambda v: v if isinstance(v, str) else "")
def test_manifest_validates_against_kubernetes_schema(name, doc):
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_deployment_is_hardened():
    spec = _one("Deployment")["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    pod_sc = spec["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] == 10001
    assert pod_sc["seccompProfile"] == {"type": "Localhost", "localhostProfile": SECCOMP_PROFILE}
    (container,) = spec["containers"]
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc.get("privileged", False) is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "Localhost", "localhostProfile": SECCOMP_PROFILE}
    # /tmp is the only volume, RAM-backed and capped.
    assert spec["volumes"] == [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}]
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    res = container["resources"]
    assert {"cpu", "memory"} <= set(res["requests"]) and {"cpu", "memory"} <= set(res["limits"])
    assert res["requests"]["memory"] == res["limits"]["memory"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert spec["terminationGracePeriodSeconds"] > float(_env(container)["NOTRACE_SHUTDOWN_GRACE_S"])


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def _mib(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    raise AssertionError(f"unexpected memory quantity {quantity!r}")


def test_workers_times_child_memory_fit_the_limit():
    (container,) = _one("Deployment")["spec"]["template"]["spec"]["containers"]
    env = _env(container)
    per_job = int(env["NOTRACE_CHILD_MEMORY_MB"]) + int(env["NOTRACE_CHILD_OUTPUT_MB"])
    jobs = int(env["NOTRACE_WORKERS"]) * per_job
    in_flight = int(env["NOTRACE_MAX_INFLIGHT_MB"])
    limit = _mib(container["resources"]["limits"]["memory"])
    tmp = _mib("64Mi")
    assert jobs + in_flight + tmp + 128 <= limit, (jobs, in_flight, limit)


def test_selectors_match_the_pods():
    labels = _one("Deployment")["spec"]["template"]["metadata"]["labels"]
    for kind, selector in [
        ("Service", _one("Service")["spec"]["selector"]),
        ("PodDisruptionBudget", _one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"]),
        ("NetworkPolicy", _one("NetworkPolicy")["spec"]["podSelector"]["matchLabels"]),
        ("Deployment", _one("Deployment")["spec"]["selector"]["matchLabels"]),
    ]:
        assert selector.items() <= labels.items(), f"{kind} selects {selector}, pods have {labels}"
    target = _one("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", _one("Deployment")["metadata"]["name"])
    port_names = {p["name"] for c in _one("Deployment")["spec"]["template"]["spec"]["containers"]
                  for p in c["ports"]}
    assert all(p["targetPort"] in port_names for p in _one("Service")["spec"]["ports"])


def test_network_policy_denies_all_egress():
    spec = _one("NetworkPolicy")["spec"]
    assert "Egress" in spec["policyTypes"]
    assert spec.get("egress", []) == []


def test_env_names_are_real_settings():
    settings = pytest.importorskip("notrace.settings")
    known = {s.env for s in settings.SETTINGS}
    (container,) = _one("Deployment")["spec"]["template"]["spec"]["containers"]
    names = {e["name"] for e in container["env"]}
    assert names <= known, f"unknown settings: {sorted(names - known)}"


def test_seccomp_profile_referenced_is_the_repo_one():
    # The node copy must be seccomp.json; the name in the manifest is documented in it.
    text = (K8S / "deployment.yaml").read_text()
    assert "seccomp.json" in text and SECCOMP_PROFILE in text
    json.loads((ROOT / "seccomp.json").read_text())


def test_validator_rejects_unknown_fields():
    # Guards the check itself: strict validation must catch a misspelt field.
    doc = json.loads(json.dumps(_one("Deployment")))
    doc["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)

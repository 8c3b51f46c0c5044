"""What a CanaryApp's pod template may ask for (reconciler/pod_policy.py): service accounts, privileges, host
paths, capabilities and Secrets, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.pod_policy import PodPolicy

POD = "spec.template.spec"


def template(*containers: dict[str, Any], **pod: Any) -> dict[str, Any]:
    return {"metadata": {"labels": {"team": "shop"}}, "spec": {"containers": list(containers), **pod}}


def app(**fields: Any) -> dict[str, Any]:
    return {"name": "app", "image": "shop/web:v2", **fields}


def secured(**security: Any) -> dict[str, Any]:
    return app(securityContext=security)


def secret_env(secret: str) -> dict[str, Any]:
    return {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}}


PLAIN = template(
    app(
        env=[
            {"name": "MODE", "value": "canary"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "web-config", "key": "level"}}},
        ],
        envFrom=[{"configMapRef": {"name": "web-config"}}],
        resources={"requests": {"cpu": "100m"}, "limits": {"memory": "128Mi"}},
        readinessProbe={"httpGet": {"path": "/ready", "port": "http"}},
        livenessProbe={"tcpSocket": {"port": 8080}},
        ports=[{"name": "http", "containerPort": 8080}],
        securityContext={
            "privileged": False,
            "allowPrivilegeEscalation": False,
            "procMount": "Default",
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        volumeMounts=[{"name": "config", "mountPath": "/etc/web"}, {"name": "scratch", "mountPath": "/tmp"}],
    ),
    volumes=[{"name": "config", "configMap": {"name": "web-config"}}, {"name": "scratch", "emptyDir": {}}],
    serviceAccountName="default",
    hostUsers=False,
    hostNetwork=False,
    securityContext={"runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
)


@pytest.mark.parametrize(
    ("pod_template", "problem_fields"),
    [
        pytest.param(None, [], id="no template"),
        pytest.param(PLAIN, [], id="plain template: env, resources, probes, configMap, emptyDir"),
        pytest.param(template(app()), [], id="no service account: default"),
        pytest.param(
            template(app(), serviceAccountName="deployer"),
            [f"{POD}.serviceAccountName"],
            id="another service account",
        ),
        pytest.param(
            template(app(), serviceAccount="deployer"),
            [f"{POD}.serviceAccount"],
            id="another service account, deprecated field",
        ),
        pytest.param(
            template(secured(privileged=True)),
            [f"{POD}.containers[0].securityContext.privileged"],
            id="privileged",
        ),
        pytest.param(
            template(secured(allowPrivilegeEscalation=True)),
            [f"{POD}.containers[0].securityContext.allowPrivilegeEscalation"],
            id="privilege escalation",
        ),
        pytest.param(
            template(secured(procMount="Unmasked")),
            [f"{POD}.containers[0].securityContext.procMount"],
            id="unmasked /proc",
        ),
        pytest.param(
            template(secured(windowsOptions={"hostProcess": True})),
            [f"{POD}.containers[0].securityContext.windowsOptions.hostProcess"],
            id="windows host process",
        ),
        pytest.param(
            template(app(), hostNetwork=True, hostPID=True, hostIPC=True),
            [f"{POD}.hostNetwork", f"{POD}.hostPID", f"{POD}.hostIPC"],
            id="host namespaces",
        ),
        pytest.param(
            template(app(ports=[{"containerPort": 8080}, {"containerPort": 9090, "hostPort": 9090}])),
            [f"{POD}.containers[0].ports[1].hostPort"],
            id="host port",
        ),
        pytest.param(
            template(app(), volumes=[{"name": "root", "hostPath": {"path": "/"}}]),
            [f"{POD}.volumes[0].hostPath.path"],
            id="host path",
        ),
        pytest.param(
            template(secured(capabilities={"add": ["NET_BIND_SERVICE", "NET_ADMIN"]})),
            [
                f"{POD}.containers[0].securityContext.capabilities.add[0]",
                f"{POD}.containers[0].securityContext.capabilities.add[1]",
            ],
            id="capabilities",
        ),
        pytest.param(
            template(secured(capabilities={"add": ["ALL"]})),
            [f"{POD}.containers[0].securityContext.capabilities.add[0]"],
            id="all capabilities",
        ),
        pytest.param(
            template(app(), volumes=[{"name": "db", "secret": {"secretName": "db"}}]),
            [f"{POD}.volumes[0].secret.secretName"],
            id="secret volume",
        ),
        pytest.param(
            template(
                app(),
                volumes=[
                    {"name": "scratch", "emptyDir": {}},
                    {
                        "name": "all",
                        "projected": {
                            "sources": [{"configMap": {"name": "web-config"}}, {"secret": {"name": "db"}}]
                        },
                    },
                ],
            ),
            [f"{POD}.volumes[1].projected.sources[1].secret.name"],
            id="projected secret",
        ),
        pytest.param(
            template(
                app(),
                volumes=[
                    {
                        "name": "vault",
                        "projected": {"sources": [{"serviceAccountToken": {"audience": "vault"}}]},
                    }
                ],
            ),
            [f"{POD}.volumes[0].projected.sources[0].serviceAccountToken"],
            id="projected service account token",
        ),
        pytest.param(
            template(app(env=[{"name": "MODE", "value": "canary"}, secret_env("db")])),
            [f"{POD}.containers[0].env[1].valueFrom.secretKeyRef.name"],
            id="secret in env",
        ),
        pytest.param(
            template(app(envFrom=[{"configMapRef": {"name": "web-config"}}, {"secretRef": {"name": "db"}}])),
            [f"{POD}.containers[0].envFrom[1].secretRef.name"],
            id="secret as env",
        ),
        pytest.param(
            template(
                app(),
                initContainers=[
                    app(name="migrate", env=[secret_env("db")], securityContext={"privileged": True})
                ],
            ),
            [
                f"{POD}.initContainers[0].securityContext.privileged",
                f"{POD}.initContainers[0].env[0].valueFrom.secretKeyRef.name",
            ],
            id="init container",
        ),
        pytest.param(
            template(
                app(),
                ephemeralContainers=[
                    app(
                        name="debug",
                        envFrom=[{"secretRef": {"name": "db"}}],
                        securityContext={"privileged": True},
                    )
                ],
            ),
            [
                f"{POD}.ephemeralContainers[0].securityContext.privileged",
                f"{POD}.ephemeralContainers[0].envFrom[0].secretRef.name",
            ],
            id="ephemeral container",
        ),
        pytest.param(
            template(app(), app(name="sidecar", securityContext={"allowPrivilegeEscalation": True})),
            [f"{POD}.containers[1].securityContext.allowPrivilegeEscalation"],
            id="second container",
        ),
    ],
)
def test_the_default_policy(pod_template: dict[str, Any] | None, problem_fields: list[str]) -> None:
    problems = PodPolicy().violations("shop", "web", pod_template)
    assert [problem.split(":", 1)[0] for problem in problems] == problem_fields


@pytest.mark.parametrize(
    ("policy", "pod_template"),
    [
        pytest.param(
            PodPolicy(allowed_service_accounts=("{name}",)),
            template(app(), serviceAccountName="web"),
            id="own service account by placeholder",
        ),
        pytest.param(
            PodPolicy(allowed_service_accounts=("{name}-*",)),
            template(app(), serviceAccountName="web-reader", serviceAccount="web-reader"),
            id="service account glob, both fields",
        ),
        pytest.param(
            PodPolicy(allow_privileged=True),
            template(
                secured(privileged=True, allowPrivilegeEscalation=True, procMount="Unmasked"),
                app(name="proxy", ports=[{"containerPort": 80, "hostPort": 80}]),
                hostNetwork=True,
                hostPID=True,
                hostIPC=True,
            ),
            id="privileges",
        ),
        pytest.param(
            PodPolicy(allowed_host_paths=("/var/log",)),
            template(
                app(),
                volumes=[
                    {"name": "logs", "hostPath": {"path": "/var/log"}},
                    {"name": "app-logs", "hostPath": {"path": "/var/log/app/", "type": "Directory"}},
                ],
            ),
            id="host path prefix",
        ),
        pytest.param(
            PodPolicy(allowed_host_paths=("/var/log/",)),
            template(app(), volumes=[{"name": "logs", "hostPath": {"path": "/var//log/./app"}}]),
            id="host path spelled differently",
        ),
        pytest.param(
            PodPolicy(allowed_capabilities=("CAP_NET_ADMIN", "net_bind_service")),
            template(secured(capabilities={"add": ["NET_ADMIN", "cap_net_bind_service"]})),
            id="capabilities with or without CAP_, any case",
        ),
        pytest.param(
            PodPolicy(allowed_capabilities=("ALL",)),
            template(secured(capabilities={"add": ["ALL", "SYS_ADMIN"]})),
            id="all capabilities",
        ),
        pytest.param(
            PodPolicy(allowed_secrets=("{name}-*", "tls")),
            template(
                app(env=[secret_env("web-db")], envFrom=[{"secretRef": {"name": "web-env"}}]),
                initContainers=[app(name="migrate", env=[secret_env("web-db")])],
                volumes=[
                    {"name": "tls", "secret": {"secretName": "tls"}},
                    {"name": "all", "projected": {"sources": [{"secret": {"name": "web-files"}}]}},
                ],
            ),
            id="secrets by placeholder and name",
        ),
    ],
)
def test_what_the_operator_permits(policy: PodPolicy, pod_template: dict[str, Any]) -> None:
    assert policy.violations("shop", "web", pod_template) == []


@pytest.mark.parametrize(
    ("policy", "pod_template", "problem_fields"),
    [
        pytest.param(
            PodPolicy(allowed_service_accounts=("{name}",)),
            template(app(), serviceAccountName="webhook"),
            [f"{POD}.serviceAccountName"],
            id="placeholder is the whole name",
        ),
        pytest.param(
            PodPolicy(allowed_service_accounts=("{name}",)),
            template(app()),
            [f"{POD}.serviceAccountName"],
            id="default no longer allowed",
        ),
        pytest.param(
            PodPolicy(allowed_service_accounts=("web",)),
            template(app(), serviceAccountName="web", serviceAccount="admin"),
            [f"{POD}.serviceAccount"],
            id="both service account fields are checked",
        ),
        pytest.param(
            PodPolicy(allowed_service_accounts=("web",)),
            template(app(), serviceAccountName="Web"),
            [f"{POD}.serviceAccountName"],
            id="service accounts are case-sensitive",
        ),
        pytest.param(
            PodPolicy(allowed_host_paths=("/var/log",)),
            template(
                app(),
                volumes=[
                    {"name": "other", "hostPath": {"path": "/var/logs"}},
                    {"name": "up", "hostPath": {"path": "/var/log/../../etc"}},
                    {"name": "relative", "hostPath": {"path": "var/log/app"}},
                    {"name": "parent", "hostPath": {"path": "/var"}},
                    {"name": "through-a-link", "hostPath": {"path": "/var/log/link/../app"}},
                ],
            ),
            [f"{POD}.volumes[{index}].hostPath.path" for index in range(5)],
            id="host path prefix ends at a segment, no way up",
        ),
        pytest.param(
            PodPolicy(allowed_capabilities=("NET_ADMIN",)),
            template(secured(capabilities={"add": ["NET_ADMIN", "ALL"]})),
            [f"{POD}.containers[0].securityContext.capabilities.add[1]"],
            id="ALL only when listed",
        ),
        pytest.param(
            PodPolicy(allowed_secrets=("{name}-*",)),
            template(app(env=[secret_env("web-db"), secret_env("payments-db")])),
            [f"{POD}.containers[0].env[1].valueFrom.secretKeyRef.name"],
            id="another app's secret",
        ),
        pytest.param(
            PodPolicy(allowed_secrets=("*",)),
            template(
                app(),
                volumes=[{"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}],
            ),
            [f"{POD}.volumes[0].projected.sources[0].serviceAccountToken"],
            id="secrets do not permit service account tokens",
        ),
    ],
)
def test_what_the_operator_still_refuses(
    policy: PodPolicy, pod_template: dict[str, Any], problem_fields: list[str]
) -> None:
    problems = policy.violations("shop", "web", pod_template)
    assert [problem.split(":", 1)[0] for problem in problems] == problem_fields


@pytest.mark.parametrize(
    ("policy", "pod_template", "expected"),
    [
        pytest.param(
            PodPolicy(),
            template(app(), serviceAccountName="deployer"),
            [
                f"{POD}.serviceAccountName",
                "ServiceAccount shop/deployer",
                "--allowed-service-accounts='default'",
            ],
            id="service account",
        ),
        pytest.param(
            PodPolicy(),
            template(secured(privileged=True)),
            [f"{POD}.containers[0].securityContext.privileged", "privileged", "--no-allow-privileged"],
            id="privileged",
        ),
        pytest.param(
            PodPolicy(allowed_host_paths=("/var/log", "/data")),
            template(app(), volumes=[{"name": "etc", "hostPath": {"path": "/etc"}}]),
            [
                f"{POD}.volumes[0].hostPath.path",
                "'/etc'",
                "--allowed-host-paths='/var/log,/data'",
                "emptyDir",
            ],
            id="host path",
        ),
        pytest.param(
            PodPolicy(),
            template(secured(capabilities={"add": ["NET_ADMIN"]})),
            [
                f"{POD}.containers[0].securityContext.capabilities.add[0]",
                "'NET_ADMIN'",
                "--allowed-capabilities=''",
            ],
            id="capability",
        ),
        pytest.param(
            PodPolicy(allowed_secrets=("{name}-*",)),
            template(app(envFrom=[{"secretRef": {"name": "db"}}])),
            [
                f"{POD}.containers[0].envFrom[0].secretRef.name",
                "Secret shop/db",
                "--allowed-secrets='{name}-*'",
            ],
            id="secret",
        ),
    ],
)
def test_a_message_names_the_field_the_flag_and_the_fix(
    policy: PodPolicy, pod_template: dict[str, Any], expected: list[str]
) -> None:
    (problem,) = policy.violations("shop", "web", pod_template)
    assert problem.startswith(f"{expected[0]}: ")
    for part in expected[1:]:
        assert part in problem
    assert "or ask its operator to permit it" in problem


@pytest.mark.parametrize(
    "pod_template",
    [
        pytest.param("not a template", id="template is a string"),
        pytest.param({"spec": ["containers"]}, id="spec is a list"),
        pytest.param({"spec": {"containers": "app"}}, id="containers is a string"),
        pytest.param({"spec": {"containers": ["app", None, 3]}}, id="containers are not objects"),
        pytest.param(
            template(
                app(
                    securityContext=["privileged"],
                    ports="8080",
                    env={"name": "x"},
                    envFrom=[{"secretRef": "db"}],
                )
            ),
            id="container fields of the wrong type",
        ),
        pytest.param(
            template(
                secured(privileged="true", capabilities={"add": "ALL"}, procMount=1),
                app(name="b", ports=[{"hostPort": "80"}, {"hostPort": True}, {"hostPort": 0}]),
                hostNetwork="true",
                serviceAccountName=7,
                volumes=[
                    "root",
                    {"hostPath": "/"},
                    {"hostPath": {"path": 1}},
                    {"secret": {"secretName": None}},
                    {"projected": {"sources": "secret"}},
                ],
            ),
            id="values of the wrong type",
        ),
    ],
)
def test_malformed_templates_are_skipped_not_fatal(pod_template: Any) -> None:
    assert PodPolicy().violations("shop", "web", pod_template) == []

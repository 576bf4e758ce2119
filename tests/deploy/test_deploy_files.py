"""deploy/, checked as far as a machine with no Docker engine and no cluster can: hadolint
on the Dockerfile, the Compose schema, Kubernetes schemas, ``systemd-analyze verify``, and
every deploy config loaded as lettabot would load it with the example secrets; the tool
sandbox's container setup (seccomp profile, unmasked /proc) by reproducing what a container
runtime does to bubblewrap."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from lettabot.runtime.config import load_config
from lettabot.runtime.sandbox.bwrap import system_args

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
GRACE = 30  # `lettabot run --grace` in every deploy file
SECCOMP = DEPLOY / "docker" / "seccomp-bwrap.json"
SANDBOX_OPTS = {"no-new-privileges:true", "seccomp=docker/seccomp-bwrap.json",
                "apparmor=unconfined", "systempaths=unconfined"}


def _tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / name), *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def _env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value or f"example-{key.lower()}"
    return out


def test_the_dockerfile_passes_hadolint_and_runs_as_a_non_root_service() -> None:
    dockerfile = DEPLOY / "docker" / "Dockerfile"
    done = _tool("hadolint", "--failure-threshold", "info", str(dockerfile))
    assert done.returncode == 0, done.stdout + done.stderr
    text = dockerfile.read_text()
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(stages) == 2 and "slim" in text  # build stage + slim runtime
    assert "build-wheels" in text and "install-wheels" in text  # wheels, not the workspace
    runtime = text.split(stages[1], 1)[1]
    assert "USER ${UID}:${UID}" in runtime and "ARG UID=10001" in runtime
    assert 'VOLUME ["/var/lib/lettabot"]' in runtime
    assert "HEALTHCHECK" in runtime and "/healthz" in runtime
    assert "STOPSIGNAL SIGTERM" in runtime
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignored[1] == "*" or "*" in ignored  # only what the build copies
    assert "**/.env" in ignored


def test_the_dockerfile_lint_can_fail() -> None:
    """The check above is real: hadolint refuses a Dockerfile that runs as root with :latest."""
    bad = subprocess.run([str(BIN / "hadolint"), "-"], input="FROM python:latest\nUSER root\n",
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "DL3007" in bad.stdout


def test_compose_matches_the_schema_and_waits_for_a_healthy_postgres() -> None:
    compose = DEPLOY / "compose.yaml"
    done = _tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(compose))
    assert done.returncode == 0, done.stdout + done.stderr
    spec = yaml.safe_load(compose.read_text())
    services = spec["services"]
    assert services["postgres"]["healthcheck"]["test"]
    bot = services["lettabot"]
    assert bot["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert bot["env_file"] == "lettabot.env"
    assert "postgresql+asyncpg://" in bot["environment"]["LETTABOT_STORE__URL"]
    assert int(bot["stop_grace_period"].rstrip("s")) > GRACE
    assert set(spec["volumes"]) >= {"postgres-data", "lettabot-data"}
    web = services["lettabot-web"]
    assert web["profiles"] == ["web"] and "depends_on" not in web
    assert (DEPLOY / ".gitignore").read_text().splitlines()[0] == "lettabot.env"


def test_the_kubernetes_base_validates_and_probes_health_and_readiness() -> None:
    k8s = DEPLOY / "k8s"
    kustomization = yaml.safe_load((k8s / "kustomization.yaml").read_text())
    resources = [k8s / name for name in kustomization["resources"]]
    assert all(r.is_file() for r in resources)
    for generator in kustomization["configMapGenerator"]:
        assert all((k8s / f).is_file() for f in generator["files"])
    assert (k8s / "secret.env.example").is_file()  # secret.env itself is never committed
    done = _tool("kubernetes-validate", "--strict", *map(str, resources))
    assert done.returncode == 0, done.stdout + done.stderr
    deployment = yaml.safe_load((k8s / "deployment.yaml").read_text())
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > GRACE
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/var/lib/lettabot", "/etc/lettabot"} <= mounts


def test_the_kubernetes_check_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n"
                   "spec: {replicas: one}\n")
    assert _tool("kubernetes-validate", "--strict", str(bad)).returncode != 0


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_systemd_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    unit = (DEPLOY / "systemd" / "lettabot.service").read_text()
    # verify wants ExecStart to exist: point it at this venv's lettabot
    local = tmp_path / "lettabot.service"
    local.write_text(unit.replace("/opt/lettabot/bin/lettabot", str(BIN / "lettabot")))
    done = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    service = {k: v for k, _, v in (line.partition("=") for line in unit.splitlines()
                                    if "=" in line and not line.startswith("#"))}
    assert service["User"] == "lettabot" and service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict" and service["PrivateTmp"] == "yes"
    assert service["ReadWritePaths"] == "/var/lib/lettabot"
    assert service["EnvironmentFile"] == "/etc/lettabot/lettabot.env"
    assert int(service["TimeoutStopSec"]) > GRACE and service["Restart"] == "on-failure"
    bad = tmp_path / "bad.service"
    bad.write_text(local.read_text().replace("ProtectSystem=", "ProtectSytem="))
    typo = subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True,
                          text=True, timeout=60)
    assert "ProtectSytem" in typo.stderr  # the check above can fail


@pytest.mark.parametrize(("config", "secrets"), [
    ("lettabot.toml", "lettabot.env.example"),
    ("k8s/lettabot.toml", "k8s/secret.env.example"),
])
def test_every_deploy_config_loads_with_its_example_secrets(
    config: str, secrets: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    for key, value in _env_file(DEPLOY / secrets).items():
        monkeypatch.setenv(key, value)
    loaded = load_config(DEPLOY / config)
    assert loaded.health.port == 8080 and loaded.health.host == "0.0.0.0"
    assert loaded.log_format == "json" and loaded.letta.permission_mode == "standard"
    assert loaded.letta.providers[0].key() == "example-anthropic_api_key"
    assert str(loaded.data_dir).startswith("/var/lib/lettabot")
    tomllib.loads((DEPLOY / config).read_text())  # plain TOML, no templating


def test_the_grafana_dashboard_charts_only_metrics_the_bot_exports() -> None:
    import json
    import re

    from lettabot.runtime.metrics import Metrics, ServerSample, StateSample

    metrics = Metrics()
    metrics.watch(lambda: StateSample(
        queued=0, turns_running=0, turns_waiting_for_slot=0, approvals_pending=0,
        open_conversations=0, draining=False,
        servers=[ServerSample(index=0, remote=False, alive=True, restarts=0, sessions=0,
                              rss_bytes=1)]))
    metrics.turn_ended("completed", 1.0)
    metrics.approval_decided("approved", "slack:U1")
    metrics.platform_call("slack", 429)
    metrics.messages.labels("slack", "accepted").inc()
    metrics.tokens.labels("input").inc()
    metrics.budget_refusals.labels("person").inc()
    metrics.budget_used.labels("tokens").set(1)
    metrics.budget_limit.labels("tokens").set(2)
    exported = {s.name for family in metrics.registry.collect() for s in family.samples}
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    used = {name for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"lettabot_\w+", target["expr"])}
    assert used and used <= exported, used - exported


# -- the tool sandbox in a container (docs/operate.md, "The tool sandbox") ----------------

def test_the_image_installs_bubblewrap_and_says_how_to_run_it() -> None:
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    runtime = text.split("FROM ${PYTHON_IMAGE}\n", 1)[1]
    install = next(step for step in runtime.split("\nRUN ") if step.startswith("apt-get"))
    assert "apt-get install -y --no-install-recommends bubblewrap" in install
    assert "rm -rf /var/lib/apt/lists/*" in install
    header = text.split("ARG PYTHON_IMAGE", 1)[0]
    for opt in SANDBOX_OPTS - {"no-new-privileges:true", "seccomp=docker/seccomp-bwrap.json"}:
        assert f"--security-opt {opt}" in header
    assert "--security-opt seccomp=deploy/docker/seccomp-bwrap.json" in header


def test_compose_relaxes_seccomp_apparmor_and_proc_for_lettabot_only() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    for name in ("lettabot", "lettabot-web"):  # both run the agent's tools
        bot = services[name]
        assert set(bot["security_opt"]) == SANDBOX_OPTS, name
        assert bot["cap_drop"] == ["ALL"] and "cap_add" not in bot and not bot.get("privileged")
    assert "security_opt" not in services["postgres"] and not services["postgres"].get("privileged")
    # compose reads the profile relative to the compose file's folder
    assert (DEPLOY / "docker" / "seccomp-bwrap.json").is_file()


def test_kubernetes_relaxes_seccomp_apparmor_and_proc_for_the_lettabot_container() -> None:
    pod = yaml.safe_load((DEPLOY / "k8s" / "deployment.yaml").read_text())["spec"]["template"]
    spec = pod["spec"]
    assert spec["hostUsers"] is False  # procMount: Unmasked needs the pod's own user namespace
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}  # the pod's
    [container] = spec["containers"]
    security = container["securityContext"]
    assert security["seccompProfile"] == {"type": "Unconfined"}
    assert security["appArmorProfile"] == {"type": "Unconfined"}
    assert security["procMount"] == "Unmasked"
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]} and not security.get("privileged")


def test_the_systemd_unit_lets_bubblewrap_make_its_namespaces() -> None:
    unit = (DEPLOY / "systemd" / "lettabot.service").read_text()
    service = {k: v for k, _, v in (line.partition("=") for line in unit.splitlines()
                                    if "=" in line and not line.startswith("#"))}
    assert set(service["RestrictNamespaces"].split()) >= {"user", "mnt", "pid", "ipc", "uts",
                                                          "net"}
    assert "AF_NETLINK" in service["RestrictAddressFamilies"].split()  # bwrap's loopback
    # each covers part of /proc: the kernel then refuses the sandbox a /proc of its own
    assert "ProtectKernelTunables" not in service and "ProtectKernelLogs" not in service
    assert service.get("PrivateUsers", "no") == "no" and "ProtectProc" not in service
    assert not {"@mount", "mount", "unshare", "clone", "pivot_root", "@privileged"} & set(
        service.get("SystemCallFilter", "").lstrip("~").split())
    assert service["NoNewPrivileges"] == "yes" and service["CapabilityBoundingSet"] == ""


def test_the_seccomp_profile_is_dockers_default_plus_the_namespace_calls() -> None:
    profile = json.loads(SECCOMP.read_text())
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    ours = [r for r in profile["syscalls"] if (r.get("comment") or "").startswith("lettabot:")]
    assert len(ours) == 1 and ours[0]["action"] == "SCMP_ACT_ALLOW"
    assert sorted(ours[0]["names"]) == ["clone", "mount", "pivot_root", "umount2", "unshare"]
    assert not ours[0].get("args") and not ours[0].get("includes")
    assert profile["syscalls"][-1] is ours[0]  # appended: the rest is Docker's, unchanged
    dockers = [r for r in profile["syscalls"] if r is not ours[0]]
    # Docker's default allows the namespace calls only with CAP_SYS_ADMIN (dropped here)
    admin = next(r for r in dockers if "unshare" in r["names"])
    assert admin["includes"] == {"caps": ["CAP_SYS_ADMIN"]}


def _as_container_user(argv: list[str]) -> list[str]:
    """``argv`` as a user with no capability and no-new-privileges, like the container's."""
    if os.geteuid() != 0:
        return argv
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", *argv]


def _probe_argv() -> list[str]:
    """What ``lettabot.runtime.sandbox.probe`` runs: a sandbox in a sandbox."""
    bwrap = shutil.which("bwrap") or "bwrap"
    inner = [bwrap, "--unshare-all", "--die-with-parent", *system_args(nested=True), "--",
             "/bin/true"]
    return [bwrap, "--unshare-pid", "--die-with-parent", *system_args(), "--", *inner]


def _sandbox_works_here() -> bool:
    if shutil.which("bwrap") is None:
        return False
    done = subprocess.run(_as_container_user(_probe_argv()), capture_output=True, timeout=60,
                          cwd="/")
    return done.returncode == 0


needs_bwrap = pytest.mark.skipif(not _sandbox_works_here(),
                                 reason="bubblewrap does not run unprivileged here")


@needs_bwrap
@pytest.mark.skipif(shutil.which("setpriv") is None and os.geteuid() == 0, reason="no setpriv")
@pytest.mark.parametrize("profile", ["docker's default", "seccomp-bwrap.json"])
def test_bubblewrap_starts_under_the_profile_and_not_under_dockers_default(
    profile: str,
) -> None:
    python = sys.executable if os.geteuid() != 0 else "/usr/bin/python3"
    if not Path(python).exists():
        pytest.skip("no python for the unprivileged user")
    loader = Path(__file__).with_name("docker_seccomp.py")
    drop = ["--drop-comment", "lettabot:"] if profile == "docker's default" else []
    argv = [python, str(loader), str(SECCOMP), *drop, "--", *_probe_argv()]
    done = subprocess.run(_as_container_user(argv), capture_output=True, text=True,
                          timeout=60, cwd="/")
    if profile == "docker's default":
        assert done.returncode != 0 and "namespace" in done.stderr, done.stderr
    else:
        assert done.returncode == 0, done.stderr


@needs_bwrap
@pytest.mark.skipif(shutil.which("unshare") is None, reason="no unshare")
def test_a_masked_proc_refuses_the_sandbox_its_own_proc() -> None:
    """Why compose unmasks /proc (systempaths=unconfined), k8s sets procMount: Unmasked and
    the systemd unit drops ProtectKernelTunables/ProtectKernelLogs: one file under /proc
    covered, as Docker's masked paths or systemd do, and bwrap cannot mount a new /proc."""
    masked = next((p for p in ("/proc/keys", "/proc/timer_list", "/proc/kmsg")
                   if Path(p).exists()), None)
    if masked is None:
        pytest.skip("none of Docker's masked /proc files exists here")
    # as root of the new user namespace bwrap would make none of its own; lettabot's user is
    # never root, and then bwrap always makes one: ask for it
    probe = shlex.join([_probe_argv()[0], "--unshare-user", *_probe_argv()[1:]])
    for cover, ok in (("true", True), (f"mount --bind /dev/null {masked}", False)):
        done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                               f"{cover} && exec {probe}"], capture_output=True, text=True,
                              timeout=60, cwd="/")
        if ok:
            if done.returncode != 0:
                pytest.skip(f"no nested user namespace here: {done.stderr.strip()}")
        else:
            assert done.returncode != 0 and "Can't mount proc" in done.stderr, done.stderr


# -- App Server hosts (docs/scaling.md, "Agents on App Server hosts") --------------------

HOST_HOME = "/var/lib/lettabot-host"


def _host_args(argv: list[str]) -> Any:
    """``argv`` (after ``lettabot``) parsed by the real command's parser."""
    from lettabot.runtime.cli import build_parser

    args = build_parser().parse_args(argv)
    assert args.command == "host"
    return args


def test_the_host_statefulset_validates_and_gives_each_host_its_own_volume() -> None:
    hosts = DEPLOY / "k8s" / "hosts"
    kustomization = yaml.safe_load((hosts / "kustomization.yaml").read_text())
    resources = [hosts / name for name in kustomization["resources"]]
    assert all(r.is_file() for r in resources)
    [secret] = kustomization["secretGenerator"]
    assert (hosts / "token.env.example").is_file()
    assert "k8s/hosts/token.env" in (DEPLOY / ".gitignore").read_text().splitlines()
    done = _tool("kubernetes-validate", "--strict", *map(str, resources))
    assert done.returncode == 0, done.stdout + done.stderr
    service = yaml.safe_load((hosts / "service.yaml").read_text())
    assert service["spec"]["clusterIP"] == "None"  # headless: a stable name per pod
    stateful = yaml.safe_load((hosts / "statefulset.yaml").read_text())
    spec = stateful["spec"]
    assert stateful["kind"] == "StatefulSet" and spec["serviceName"] == service["metadata"]["name"]
    [claim] = spec["volumeClaimTemplates"]  # each pod its own volume: its agents' state
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert spec["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Retain"
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    args = _host_args(container["args"])
    assert args.home == HOST_HOME and args.listen.startswith("ws://0.0.0.0:")
    port = int(args.listen.rsplit(":", 1)[1])
    assert container["ports"][0]["containerPort"] == port
    assert service["spec"]["ports"][0]["port"] == port
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == HOST_HOME
    env = {e["name"]: e for e in container["env"]}
    assert env["HOME"]["value"] == HOST_HOME
    token = env["LETTABOT_HOST_TOKEN"]  # from the secret, never in the args
    assert token["valueFrom"]["secretKeyRef"]["name"] == secret["name"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    security = container["securityContext"]  # the tool sandbox, as in ../deployment.yaml
    assert security["allowPrivilegeEscalation"] is False
    assert security["procMount"] == "Unmasked" and pod["hostUsers"] is False
    assert security["seccompProfile"] == {"type": "Unconfined"}
    assert args.workspaces == mounts["workspace"] == "/var/lib/lettabot/workspace"
    assert not args.no_sandbox


def test_the_hosts_compose_file_matches_the_schema_and_gives_each_host_a_volume() -> None:
    compose = DEPLOY / "compose.hosts.yaml"
    done = _tool("check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(compose))
    assert done.returncode == 0, done.stdout + done.stderr
    spec = yaml.safe_load(compose.read_text())
    hosts = {n: s for n, s in spec["services"].items() if n.startswith("lettabot-host")}
    assert len(hosts) == 2
    volumes = set()
    for service in hosts.values():
        args = _host_args(service["command"])
        assert args.home == HOST_HOME and args.token_file is None and not args.no_sandbox
        assert "LETTABOT_HOST_TOKEN" in service["environment"]
        mount, workspace = service["volumes"]
        volume, path = mount.split(":")
        assert path == HOST_HOME
        volumes.add(volume)
        assert workspace["target"] == args.workspaces == "/var/lib/lettabot/workspace"
        assert set(service["security_opt"]) == SANDBOX_OPTS
        assert "/readyz" in " ".join(service["healthcheck"]["test"])
    assert len(volumes) == 2 and volumes <= set(spec["volumes"])  # one volume per host
    assert set(spec["services"]["lettabot"]["depends_on"]) == set(hosts)


def test_the_host_systemd_unit_runs_lettabot_host_hardened() -> None:
    unit = (DEPLOY / "systemd" / "lettabot-host.service").read_text()
    service = {k: v for k, _, v in (line.partition("=") for line in unit.splitlines()
                                    if "=" in line and not line.startswith("#"))}
    exec_start = shlex.split(service["ExecStart"])
    assert exec_start[0] == "/opt/lettabot/bin/lettabot"
    args = _host_args(exec_start[1:])
    assert service["ReadWritePaths"].split() == [HOST_HOME, args.workspaces]
    assert args.home == HOST_HOME and args.token_file and not args.no_sandbox
    assert service["RestrictNamespaces"] == "user mnt pid ipc uts net cgroup"
    assert not args.token_file.startswith(HOST_HOME)  # the token is not the agents' to read
    assert service["User"] == "lettabot-host" and service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict" and service["KillSignal"] == "SIGTERM"
    assert service["RestartPreventExitStatus"] == "2"  # no token: a restart will not help


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_host_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = (DEPLOY / "systemd" / "lettabot-host.service").read_text()
    local = tmp_path / "lettabot-host.service"
    local.write_text(unit.replace("/opt/lettabot/bin/lettabot", str(BIN / "lettabot")))
    done = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr

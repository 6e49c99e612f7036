"""A container's environment and argv, resolved the way kubelet does (pure logic).

* ``envFrom`` sources first (in order, later ones win), then ``env`` entries in order; each
  ``env`` value may reference variables defined before it with ``$(VAR)``; ``$$`` escapes.
* Service variables (``KUBERNETES_SERVICE_HOST`` ...) are available to ``$(VAR)`` but the
  container's own definitions win.
* ``command`` and ``args`` are expanded against the final environment. An empty ``command``
  cannot run here: there are no images, hence no entrypoint (``NoCommand``).
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

Obj = dict[str, Any]


class ConfigError(Exception):
    """The container cannot be configured yet (kubelet: CreateContainerConfigError)."""

    reason = "CreateContainerConfigError"


class NoCommandError(Exception):
    """The container has no ``command``: without images there is no entrypoint to fall back to."""

    reason = "NoCommand"


class EnvSources(Protocol):
    """Where Secrets and ConfigMaps come from; ``None`` means not found."""

    def secret(self, namespace: str, name: str) -> Mapping[str, str] | None: ...

    def config_map(self, namespace: str, name: str) -> Mapping[str, str] | None: ...


# -- $(VAR) expansion (a port of k8s.io/kubernetes third_party/forked/golang/expansion) --------


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Expand ``$(VAR)`` references; unknown references stay as written, ``$$`` is ``$``."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    n = len(text)
    while cursor < n:
        if text[cursor] == "$" and cursor + 1 < n:
            out.append(text[checkpoint:cursor])
            rest = text[cursor + 1 :]
            if rest[0] == "$":
                out.append("$")
                advance = 1
            elif rest[0] == "(":
                close = rest.find(")", 1)
                if close == -1:
                    out.append("$(")
                    advance = 1
                else:
                    name = rest[1:close]
                    value = lookup(name)
                    out.append(value if value is not None else f"$({name})")
                    advance = close + 1
            else:
                out.append("$" + rest[0])
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


def mapping_lookup(*maps: Mapping[str, str]) -> Callable[[str], str | None]:
    def lookup(name: str) -> str | None:
        for m in maps:
            if name in m:
                return m[name]
        return None

    return lookup


# -- quantities (for resourceFieldRef) ---------------------------------------------------------

_SUFFIX = {
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")


def parse_quantity(q: str | int | float) -> Decimal:
    m = _QUANTITY.match(str(q).strip())
    if not m or m.group(2) not in _SUFFIX:
        raise ValueError(f"invalid quantity {q!r}")
    try:
        return Decimal(m.group(1)) * _SUFFIX[m.group(2)]
    except InvalidOperation as exc:
        raise ValueError(f"invalid quantity {q!r}") from exc


# -- pod field references -------------------------------------------------------------------

_LABEL_REF = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


@dataclass
class PodContext:
    """What the fieldRef / resourceFieldRef / service variables need to know about the pod."""

    pod: Obj
    pod_ip: str
    host_ip: str = "127.0.0.1"
    service_env: dict[str, str] = field(default_factory=dict)
    node_allocatable: dict[str, str] = field(default_factory=dict)


def field_ref(ctx: PodContext, path: str) -> str:
    meta = ctx.pod.get("metadata", {})
    spec = ctx.pod.get("spec", {})
    simple: dict[str, str] = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": ctx.pod_ip,
        "status.podIPs": ctx.pod_ip,
        "status.hostIP": ctx.host_ip,
        "status.hostIPs": ctx.host_ip,
    }
    if path in simple:
        return simple[path]
    m = _LABEL_REF.match(path)
    if m:
        return str(meta.get(m.group(1), {}).get(m.group(2), ""))
    raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")


def resource_field_ref(ctx: PodContext, container: Obj, ref: Obj) -> str:
    res = str(ref.get("resource", ""))
    kind, _, name = res.partition(".")
    if kind not in ("limits", "requests") or name not in ("cpu", "memory", "ephemeral-storage"):
        raise ConfigError(f"unsupported resourceFieldRef resource {res!r}")
    resources = container.get("resources", {})
    value = resources.get(kind, {}).get(name)
    if value is None and kind == "limits":
        value = ctx.node_allocatable.get(name)
    if value is None and kind == "requests":
        value = resources.get("limits", {}).get(name)
    if value is None:
        return "0"
    divisor = parse_quantity(ref.get("divisor") or "1")
    if divisor == 0:
        divisor = Decimal(1)
    return str(math.ceil(parse_quantity(value) / divisor))


# -- the environment -------------------------------------------------------------------------


def _source_data(
    sources: EnvSources, kind: str, namespace: str, name: str
) -> Mapping[str, str] | None:
    if kind == "secret":
        return sources.secret(namespace, name)
    return sources.config_map(namespace, name)


def resolve_env(container: Obj, ctx: PodContext, sources: EnvSources) -> dict[str, str]:
    """The container's environment (without the agent's PATH). Raises ConfigError."""
    namespace = ctx.pod.get("metadata", {}).get("namespace", "default")
    env: dict[str, str] = {}

    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "") or ""
        for kind, key in (("configMap", "configMapRef"), ("secret", "secretRef")):
            ref = src.get(key)
            if ref is None:
                continue
            name = ref.get("name", "")
            data = _source_data(sources, kind, namespace, name)
            if data is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{kind} "{name}" not found')
            for k, v in data.items():
                var = prefix + k
                if "=" in var or not var:
                    continue
                env[var] = v

    for item in container.get("env") or []:
        name = item["name"]
        if "value" in item or "valueFrom" not in item:
            raw = item.get("value", "") or ""
            env[name] = expand(raw, mapping_lookup(env, ctx.service_env))
            continue
        vf = item["valueFrom"]
        if "fieldRef" in vf:
            env[name] = field_ref(ctx, vf["fieldRef"].get("fieldPath", ""))
        elif "resourceFieldRef" in vf:
            env[name] = resource_field_ref(ctx, container, vf["resourceFieldRef"])
        elif "secretKeyRef" in vf or "configMapKeyRef" in vf:
            kind, ref = (
                ("secret", vf["secretKeyRef"])
                if "secretKeyRef" in vf
                else ("configMap", vf["configMapKeyRef"])
            )
            ref_name = ref.get("name", "")
            key = ref.get("key", "")
            data = _source_data(sources, kind, namespace, ref_name)
            if data is None or key not in data:
                if ref.get("optional"):
                    continue
                if data is None:
                    raise ConfigError(f'{kind} "{ref_name}" not found')
                label = "Secret" if kind == "secret" else "ConfigMap"
                raise ConfigError(f"couldn't find key {key} in {label} {namespace}/{ref_name}")
            env[name] = data[key]
        else:
            raise ConfigError(f"env {name}: unsupported valueFrom {sorted(vf)}")

    merged = dict(ctx.service_env)
    merged.update(env)
    return merged


def container_argv(container: Obj, env: Mapping[str, str]) -> list[str]:
    """``command`` + ``args`` with ``$(VAR)`` expanded. Raises NoCommandError."""
    command = list(container.get("command") or [])
    if not command:
        raise NoCommandError(
            f"container {container.get('name')!r} has no command: the node agent runs processes, "
            "not images, so there is no image entrypoint to fall back to; set "
            "spec.containers[].command"
        )
    args = list(container.get("args") or [])
    lookup = mapping_lookup(env)
    return [expand(str(a), lookup) for a in command + args]


def process_env(
    container_env: Mapping[str, str], agent_path: str, extra_defaults: Mapping[str, str]
) -> dict[str, str]:
    """The process environment: defaults, then the container's env, then the agent's PATH.

    The agent's PATH is appended after the container's own PATH (if any), so project commands
    resolve from the agent's virtualenv; nothing else of the agent's environment leaks in
    (no VIRTUAL_ENV).
    """
    env = dict(extra_defaults)
    env.update(container_env)
    own = container_env.get("PATH", "")
    env["PATH"] = f"{own}:{agent_path}" if own and agent_path else (own or agent_path)
    return env


def decode_secret(secret: Obj) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in (secret.get("data") or {}).items():
        out[k] = base64.b64decode(v).decode("utf-8", errors="replace")
    for k, v in (secret.get("stringData") or {}).items():
        out[k] = str(v)
    return out


def configmap_data(cm: Obj) -> dict[str, str]:
    out = {k: str(v) for k, v in (cm.get("data") or {}).items()}
    for k, v in (cm.get("binaryData") or {}).items():
        out.setdefault(k, base64.b64decode(v).decode("utf-8", errors="replace"))
    return out

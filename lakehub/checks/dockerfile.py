"""Dockerfile rules, over the file's text: pinned base images, the final stage's user."""

from __future__ import annotations

import re


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        parts = buf.split(None, 1)
        out.append((parts[0].upper(), parts[1] if len(parts) > 1 else ""))
        buf = ""
    return out


def dockerfile_base_images_pinned(text: str, require_digest: bool = False) -> list[str]:
    """Problems with FROM lines: an untagged or `latest` base (or no digest when required).
    A FROM naming an earlier stage is fine."""
    problems: list[str] = []
    stages: set[str] = set()
    args: dict[str, str] = {}
    for instr, rest in dockerfile_instructions(text):
        if instr == "ARG" and "=" in rest:
            k, v = rest.split("=", 1)
            args[k.strip()] = v.strip().strip('"')
        if instr != "FROM":
            continue
        words = [w for w in rest.split() if not w.startswith("--")]
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
        if len(words) >= 3 and words[1].lower() == "as":
            stages.add(words[2].lower())
        if image.lower() in stages or image == "scratch":
            continue
        name, _, digest = image.partition("@")
        tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else None
        if "$" in image:
            problems.append(f"FROM {words[0]}: the base image comes from an ARG without a default")
        elif digest:
            continue
        elif tag is None or tag == "latest":
            problems.append(f"FROM {image}: no version tag (or 'latest')")
        elif require_digest:
            problems.append(f"FROM {image}: no digest")
    return problems


def dockerfile_final_user(text: str) -> str | None:
    """The USER of the last stage (None when the last stage sets none: root)."""
    user = None
    for instr, rest in dockerfile_instructions(text):
        if instr == "FROM":
            user = None
        elif instr == "USER":
            user = rest.split()[0] if rest.split() else None
    return user


def is_root_user(user: str | None) -> bool:
    return user is None or user.split(":")[0] in ("root", "0")

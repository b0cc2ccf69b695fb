"""Creating LexLIP indices and templates on the caller's cluster, reading their layout back, and swapping aliases.

Re-encoding with a new checkpoint never rewrites a live index: `create_versioned_index` builds `<alias>-<model>-<n>`,
the caller fills it, and `swap_alias` moves the alias in one atomic `_aliases` call.
"""

from __future__ import annotations

import re
from typing import Any

from lexlip_es.clients import engine_errors, flavor_of
from lexlip_es.errors import IndexNotFoundError, MappingError
from lexlip_es.mapping import IndexOptions, LexiconLayout, check_field_type, index_body, template_body

_NAME_UNSAFE = re.compile(r"[^a-z0-9_-]+")


def create_index(client: Any, index: str, layout: LexiconLayout, options: IndexOptions | None = None) -> dict[str, Any]:
    flavor = flavor_of(client)
    check_field_type(flavor, layout)
    body = index_body(layout, options, flavor=flavor)
    with engine_errors(f"creating index {index!r}", index):
        if flavor == "opensearch":
            return dict(client.indices.create(index=index, body=body))
        return dict(client.indices.create(index=index, settings=body["settings"], mappings=body["mappings"]))


def put_template(
    client: Any,
    name: str,
    patterns: list[str],
    layout: LexiconLayout,
    options: IndexOptions | None = None,
    priority: int = 100,
) -> dict[str, Any]:
    """A composable index template: indices created later under `patterns` get the LexLIP layout."""
    flavor = flavor_of(client)
    check_field_type(flavor, layout)
    body = template_body(patterns, layout, options, priority, flavor=flavor)
    with engine_errors(f"putting index template {name!r}"):
        if flavor == "opensearch":
            return dict(client.indices.put_index_template(name=name, body=body))
        return dict(
            client.indices.put_index_template(
                name=name,
                index_patterns=body["index_patterns"],
                priority=priority,
                template=body["template"],
                meta=body["_meta"],
            )
        )


def read_layout(client: Any, index: str) -> LexiconLayout:
    """The LexiconLayout recorded in an index's `_meta` (an alias must point at indices that agree)."""
    with engine_errors(f"reading the mapping of {index!r}", index):
        response = dict(client.indices.get_mapping(index=index))
    return layout_from_mapping(response, index)


def layout_from_mapping(response: dict[str, Any], index: str) -> LexiconLayout:
    """The layout in a `GET <index>/_mapping` answer; every index behind an alias must agree."""
    if not response:
        raise IndexNotFoundError(f"index {index!r} does not exist")
    layouts = {name: LexiconLayout.from_meta(m["mappings"].get("_meta"), name) for name, m in response.items()}
    distinct = set(layouts.values())
    if len(distinct) > 1:
        raise MappingError(f"{index!r} spans indices with different LexLIP layouts: {sorted(layouts)}")
    return distinct.pop()


def alias_targets(client: Any, alias: str) -> list[str]:
    """The indices an alias points at; empty when the alias does not exist."""
    with engine_errors(f"reading alias {alias!r}"):
        if not client.indices.exists_alias(name=alias):
            return []
        return sorted(client.indices.get_alias(name=alias))


def versioned_name(alias: str, model_id: str, client: Any) -> str:
    """`<alias>-<model>-<n>` with n one above any existing index of that prefix."""
    prefix = f"{alias}-{_NAME_UNSAFE.sub('-', model_id.lower()).strip('-')}-"
    with engine_errors(f"listing indices {prefix}*"):
        existing = client.indices.get(index=f"{prefix}*", ignore_unavailable=True, allow_no_indices=True)
    numbers = [int(n[len(prefix) :]) for n in existing if n[len(prefix) :].isdigit()]
    return f"{prefix}{max(numbers, default=0) + 1}"


def create_versioned_index(client: Any, alias: str, layout: LexiconLayout, options: IndexOptions | None = None) -> str:
    """A new concrete index for `alias` (not yet pointed to); returns its name."""
    with engine_errors(f"checking {alias!r}"):
        if client.indices.exists(index=alias) and not client.indices.exists_alias(name=alias):
            raise MappingError(f"{alias!r} is a concrete index, not an alias: re-encoding needs an alias to swap")
    name = versioned_name(alias, layout.model_id, client)
    create_index(client, name, layout, options)
    return name


def swap_alias(client: Any, alias: str, new_index: str, delete_old: bool = False) -> list[str]:
    """Point `alias` at `new_index` only, in one atomic `_aliases` call; returns the indices it left."""
    old = [i for i in alias_targets(client, alias) if i != new_index]
    actions: list[dict[str, Any]] = [{"remove": {"index": i, "alias": alias}} for i in old]
    actions.append({"add": {"index": new_index, "alias": alias, "is_write_index": True}})
    with engine_errors(f"moving alias {alias!r} to {new_index!r}", new_index):
        if flavor_of(client) == "opensearch":
            client.indices.update_aliases(body={"actions": actions})
        else:
            client.indices.update_aliases(actions=actions)
        if delete_old:
            for index in old:
                client.indices.delete(index=index)
    return old

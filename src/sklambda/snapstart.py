"""Lambda SnapStart: what runs once before the snapshot, and what each restored environment
renews.

With SnapStart, Lambda runs a version's init once when the version is published, snapshots the
memory, and resumes every later execution environment from that snapshot. A handler calls
``register`` once, at module level after its init; the runtime calls the hooks, and only for a
SnapStart version (it runs them when ``AWS_LAMBDA_INITIALIZATION_TYPE`` is ``snap-start``), so a
function without SnapStart behaves as before: registering costs the import of one small module
and two list entries.

Before the snapshot (once, at publish time):

1. the model: loaded (the handler's getter) and one row scored through the core, so that the
   snapshot holds a warm ONNX session or pipeline. The row is the first of the probe file when
   the model has one (``sklambda.probes``), else one built from the manifest's features;
2. the handler's own ``before_snapshot``, if any;
3. every AWS client dropped, with boto3's default session (its cached credentials): no
   connection and no credential is in the snapshot.

A model that cannot be loaded or scored raises here, and that is deliberate: Lambda then fails
the publish (``Runtime.BeforeSnapshotError``), so the deployment stops at the broken version
and no traffic ever reaches it. Without SnapStart the predict function answers 503 for a model
that did not load (its alarms roll the deployment back); a snapshot of that state would serve
503 from every restored environment, for as long as the version lives. The error is the
model's own ``ModelLoadError`` (or the scoring error), never hidden or replaced.

After each restore (every environment resumed from the snapshot):

1. the client cache and boto3's default session dropped again: clients are made anew, on first
   use, with their own connections and credentials;
2. ``random`` reseeded from ``os.urandom`` (the capture sample draws from it: environments
   resumed from one snapshot would otherwise draw the same sequence), and numpy's legacy global
   generator too when numpy is loaded;
3. the handler's own ``after_restore``, if any (the handlers re-draw Powertools' log sampling).

Nothing here may be slow or fail for a reason outside the environment: Lambda allows 10 s for
the runtime and the after-restore hooks together, and a hook that raises fails the restore.

One function per process, as Lambda runs it: a second ``register`` (a test, a local tool that
starts a new execution environment) replaces the hooks of the first rather than adding to them,
so that the runtime's registry holds one entry per phase.

Examples
--------
The row scored before the snapshot, for the example model (its probe file's first):

>>> from sklambda.model import load
>>> warm_row(load("models/penguins"))
{'island': 'Biscoe', 'bill_length_mm': 50.0, 'bill_depth_mm': 15.2, 'flipper_length_mm': 218.0, \
'body_mass_g': 5700.0, 'sex': 'male'}
"""

from __future__ import annotations

import importlib
import os
import random
import sys
from typing import TYPE_CHECKING, Any

from sklambda import aws

if TYPE_CHECKING:
    from collections.abc import Callable

    from sklambda.model import Model

    Hook = Callable[[], object]

HOOKS_MODULE = "snapshot_restore_py"
"""The runtime hooks' library: in Lambda's Python 3.12+ managed runtimes, never in a layer."""


class _Slot:
    """The hooks of this process's function (``register`` replaces them); no dataclass, so
    that the import stays under a millisecond."""

    model: Callable[[], Model] | None = None
    before_snapshot: Hook | None = None
    after_restore: Hook | None = None


def _runtime() -> Any | None:
    """The runtime hooks' module, or ``None`` where it is not installed."""
    try:
        return importlib.import_module(HOOKS_MODULE)
    except ImportError:
        return None


def available() -> bool:
    """Whether the runtime hooks' library can be imported (it can in Lambda's runtime)."""
    return _runtime() is not None


def register(
    model: Callable[[], Model],
    *,
    before_snapshot: Hook | None = None,
    after_restore: Hook | None = None,
) -> bool:
    """Register this function's SnapStart hooks with the runtime: ``True`` when registered,
    ``False`` when ``snapshot_restore_py`` cannot be imported (nothing is registered then, and
    the function runs as it would without SnapStart).

    ``model`` gives the function's model (it raises when the model cannot be loaded);
    ``before_snapshot`` runs after the model is warm and before the clients are dropped;
    ``after_restore`` runs after the standard renewal.
    """
    runtime = _runtime()
    if runtime is None:
        return False
    _Slot.model, _Slot.before_snapshot, _Slot.after_restore = model, before_snapshot, after_restore
    for hook, add, registered in (
        (_before_snapshot, runtime.register_before_snapshot, runtime.get_before_snapshot()),
        (_after_restore, runtime.register_after_restore, runtime.get_after_restore()),
    ):
        # The registry holds (callable, args, kwargs); the runtime empties the before-snapshot
        # one as it runs it, so "registered once" is read from the registry, not remembered.
        if not any(entry[0] is hook for entry in registered):
            add(hook)
    return True


def _before_snapshot() -> None:
    if _Slot.model is not None:
        warm(_Slot.model())  # raises when the model cannot be loaded or scored: no snapshot
    if _Slot.before_snapshot is not None:
        _Slot.before_snapshot()
    forget_clients()


def _after_restore() -> None:
    renew()
    if _Slot.after_restore is not None:
        _Slot.after_restore()


def warm(model: Model) -> None:
    """Score one valid row through the core (validation, the runtime, the answer's format),
    so that the first request after a restore finds everything it needs made."""
    from sklambda.scoring import predict_all

    predict_all(model, [warm_row(model)]).predictions()


def warm_row(model: Model) -> dict[str, Any]:
    """The row ``warm`` scores: the probe file's first (a holdout row the packaged pipeline
    answered), or, for a model packaged without one, a row built from the manifest."""
    from sklambda.probes import PROBES_FILE
    from sklambda.probes import read as read_probes

    manifest = model.manifest
    if PROBES_FILE in manifest.artifacts:
        return dict(read_probes(model.path, manifest).rows[0].instance)
    return manifest.example_instance()


def forget_clients() -> None:
    """Drop every cached AWS client and boto3's default session (and with it the credentials
    it resolved): the next client is made anew."""
    aws.reset_clients()
    boto3: Any = sys.modules.get("boto3")  # never imported here: a function without AWS has none
    if boto3 is not None:
        boto3.DEFAULT_SESSION = None


def renew() -> None:
    """What an environment resumed from a snapshot must not share with its siblings: clients
    (connections, credentials) and the state of the pseudo-random generators."""
    forget_clients()
    random.seed(os.urandom(32))
    numpy_random: Any = sys.modules.get("numpy.random")  # loaded with numpy; reseeded from the OS
    if numpy_random is not None:
        numpy_random.seed()

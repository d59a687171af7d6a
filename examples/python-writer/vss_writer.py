#!/usr/bin/env python3
"""A VSS writer for vss for Linux, written in Python with the `varlink` package from PyPI.

It serves the ``vss.Writer`` varlink interface (loaded from its .varlink file) on
``<writers-dir>/<name>.sock``, the way writers built with the Rust SDK (crate vss-writer) do, and
mirrors the flags of the project's test writer (vss-test-writer): every event is appended to an
events log as one JSON line (fsynced before replying), and the writer can fail, hang or exit at a
given event. See README.md.

Like the Rust SDK, it enforces the freeze contract itself: after a successful Freeze, if Thaw does
not come within the freeze timeout, or the connection that delivered Freeze closes first, the
writer aborts (a late Thaw then fails with VSS_E_WRITERERROR_TIMEOUT), and only root and
``--coordinator-uid`` may connect.
"""

import argparse
import functools
import json
import os
import signal
import socket
import stat
import struct
import sys
import threading
import time
import uuid

import varlink

# The codes a writer may fail an event with, and their HRESULTs (unsigned).
WRITER_ERRORS = {
    "VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT": 0x800423F0,
    "VSS_E_WRITERERROR_OUTOFRESOURCES": 0x800423F1,
    "VSS_E_WRITERERROR_TIMEOUT": 0x800423F2,
    "VSS_E_WRITERERROR_RETRYABLE": 0x800423F3,
    "VSS_E_WRITERERROR_NONRETRYABLE": 0x800423F4,
    "VSS_E_WRITERERROR_RECOVERY_FAILED": 0x800423F5,
    "VSS_E_WRITERERROR_PARTIAL_FAILURE": 0x80042336,
}

EVENTS = [
    "Identify", "PrepareForBackup", "PrepareForSnapshot", "Freeze", "Thaw", "PostSnapshot", "Abort",
    "BackupComplete", "BackupShutdown", "PreRestore", "PostRestore",
]

LEVELS = {
    "front-end": "VSS_APP_FRONT_END",
    "back-end": "VSS_APP_BACK_END",
    "system": "VSS_APP_SYSTEM",
    "system-rm": "VSS_APP_SYSTEM_RM",
    "unknown": "VSS_APP_UNKNOWN",
    "auto": "VSS_APP_AUTO",
}

# Writer ids derived from --name: uuid5(this namespace, "vss-python-writer:NAME").
WRITER_ID_NAMESPACE = uuid.UUID("5c1f7e0a-3b1d-4c8e-9a57-1e2d0b6fa001")

DEFAULT_INTERFACE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..", "..", "crates", "vss-protocol", "interfaces", "vss.Writer.varlink",
)


class WriterFailure(varlink.VarlinkError):
    """The error ``vss.Writer.WriterFailure(code, hresult, message)``."""

    def __init__(self, code, message):
        varlink.VarlinkError.__init__(self, {
            "error": "vss.Writer.WriterFailure",
            "parameters": {"code": code, "hresult": WRITER_ERRORS[code], "message": message},
        })


def log(msg):
    """Diagnostics go to stderr, never to a file on a volume that may be frozen."""
    print("vss_writer.py[%d]: %s" % (os.getpid(), msg), file=sys.stderr, flush=True)


def parse_event(name):
    for e in EVENTS:
        if e.lower() == name.lower():
            return e
    raise argparse.ArgumentTypeError("'%s' is not an event: use one of %s" % (name, ", ".join(EVENTS)))


def parse_fail_at(spec):
    event, _, code = spec.partition(":")
    event = parse_event(event)
    if not code:
        code = "VSS_E_WRITERERROR_RETRYABLE"
    elif code not in WRITER_ERRORS and "VSS_E_WRITERERROR_" + code in WRITER_ERRORS:
        code = "VSS_E_WRITERERROR_" + code
    if code not in WRITER_ERRORS:
        raise argparse.ArgumentTypeError("'%s' is not one of %s" % (code, ", ".join(WRITER_ERRORS)))
    return (event, code)


def parse_level(level):
    if level in LEVELS.values():
        return level
    if level in LEVELS:
        return LEVELS[level]
    raise argparse.ArgumentTypeError("'%s' is not a level: use a VSS_APP_* name or one of %s"
                                     % (level, ", ".join(LEVELS)))


def parse_component(spec):
    """LOGICALPATH:NAME:selectable|fixed:PATH[,PATH...] -> a WmdComponent (FILE_GROUP)."""
    parts = spec.split(":", 3)
    if len(parts) != 4:
        raise argparse.ArgumentTypeError("'%s' is not LOGICALPATH:NAME:selectable|fixed:PATH[,PATH...]" % spec)
    logical_path, name, kind, paths = parts
    if not name:
        raise argparse.ArgumentTypeError("component '%s' has no name" % spec)
    if kind not in ("selectable", "fixed"):
        raise argparse.ArgumentTypeError("'%s' in '%s' must be 'selectable' or 'fixed'" % (kind, spec))
    paths = [p for p in paths.split(",") if p]
    if not paths:
        raise argparse.ArgumentTypeError("component '%s' names no path" % spec)
    selectable = kind == "selectable"
    return {
        "componentType": "VSS_CT_FILEGROUP",
        "logicalPath": logical_path,
        "name": name,
        "caption": name,
        "selectable": selectable,
        "selectableForRestore": selectable,
        "notifyOnBackupComplete": True,
        "restoreMetadata": False,
        "componentFlags": 0,
        "files": [{"path": p, "filespec": "*", "recursive": True, "backupTypeMask": 0xF0F} for p in paths],
        "logFiles": [],
        "dependencies": [],
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="A VSS writer in Python: serves vss.Writer on WRITERS_DIR/NAME.sock, logs every event "
                    "and can fail, hang or exit at a given event. Prints 'ready <socket path>' once listening.",
    )
    p.add_argument("--writers-dir", required=True, metavar="DIR", help="where to put the socket (created if missing)")
    p.add_argument("--name", default="python-writer", help="writer name; the socket is NAME.sock")
    p.add_argument("--writer-id", type=uuid.UUID, metavar="UUID",
                   help="writer class id (default: uuid5 derived from NAME)")
    p.add_argument("--instance-id", type=uuid.UUID, metavar="UUID", help="writer instance id (default: random)")
    p.add_argument("--level", type=parse_level, default="VSS_APP_FRONT_END",
                   help="application level, a VSS_APP_* name (or front-end, back-end, system, system-rm)")
    p.add_argument("--freeze-timeout-ms", type=int, default=60000, metavar="N",
                   help="Freeze->Thaw window; the writer aborts itself when Thaw is late")
    p.add_argument("--component", action="append", type=parse_component, default=[], metavar="SPEC",
                   help="FILE_GROUP component LOGICALPATH:NAME:selectable|fixed:PATH[,PATH...] (repeatable)")
    p.add_argument("--events-log", metavar="FILE", help="append one JSON line per event (fsynced before replying)")
    p.add_argument("--fail-at", action="append", type=parse_fail_at, default=[], metavar="EVENT[:CODE]",
                   help="fail EVENT with CODE (default VSS_E_WRITERERROR_RETRYABLE); repeatable")
    p.add_argument("--hang-at", action="append", type=parse_event, default=[], metavar="EVENT",
                   help="sleep for an hour at EVENT; repeatable")
    p.add_argument("--exit-at", action="append", type=parse_event, default=[], metavar="EVENT",
                   help="exit with status 9 at EVENT without replying; repeatable")
    p.add_argument("--write-on-freeze", metavar="PATH", help="write 'freeze' to PATH (fsynced) on Freeze")
    p.add_argument("--write-on-thaw", metavar="PATH", help="write 'thaw' to PATH (fsynced) on Thaw")
    p.add_argument("--coordinator-uid", type=int, metavar="UID", help="also serve this uid (besides root)")
    p.add_argument("--interface", default=DEFAULT_INTERFACE, metavar="FILE",
                   help="the vss.Writer.varlink file (default: the repository's, relative to this script)")
    return p.parse_args(argv)


def write_synced(path, content):
    with open(path, "w") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())


class WriterState:
    """The writer's configuration plus the freeze bookkeeping shared by all connections."""

    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.log_lock = threading.Lock()
        self.events_log = open(args.events_log, "a") if args.events_log else None
        # snapshot set -> ("frozen", connection id, timer) | ("thawed",) | ("aborted",) | ("timedout",)
        self.sets = {}
        self.metadata = {
            "writerId": str(args.writer_id or uuid.uuid5(WRITER_ID_NAMESPACE, "vss-python-writer:" + args.name)),
            "instanceId": str(args.instance_id or uuid.uuid4()),
            "writerName": args.name,
            "instanceName": args.name,
            "usageType": "VSS_UT_USERDATA",
            "sourceType": "VSS_ST_OTHER",
            "applicationLevel": args.level,
            "freezeTimeoutMs": args.freeze_timeout_ms,
            "restoreMethod": "VSS_RME_RESTORE_IF_CAN_REPLACE",
            "writerRestore": "VSS_WRE_ALWAYS",
            "backupSchema": 0,
            "version": "1.0",
            "excludeFiles": [],
            "components": args.component,
        }

    def on_event(self, event, params):
        """Logs the event (fsynced), then exits, hangs or fails as asked."""
        log(event)
        if self.events_log is not None:
            line = json.dumps({"event": event, "params": params, "pid": os.getpid()}, separators=(",", ":"))
            with self.log_lock:
                self.events_log.write(line + "\n")
                self.events_log.flush()
                os.fsync(self.events_log.fileno())
        if event in self.args.exit_at:
            log("exiting at %s as asked (--exit-at)" % event)
            os._exit(9)
        if event in self.args.hang_at:
            log("hanging at %s as asked (--hang-at)" % event)
            time.sleep(3600)
        for (e, code) in self.args.fail_at:
            if e == event:
                raise WriterFailure(code, "vss_writer.py fails %s with %s as asked (--fail-at)" % (event, code))

    # The freeze contract (the same rules as the Rust SDK's runtime).

    def abort_hook(self, params):
        """What the writer does on Abort: here only logging (nothing else to undo)."""
        try:
            self.on_event("Abort", params)
        except WriterFailure:
            pass

    def begin_freeze(self, set_id):
        with self.lock:
            state = self.sets.get(set_id, ("none",))[0]
        if state in ("aborted", "timedout"):
            raise WriterFailure("VSS_E_WRITERERROR_NONRETRYABLE", "snapshot set %s was already aborted" % set_id)
        if state == "frozen":
            raise WriterFailure("VSS_E_WRITERERROR_NONRETRYABLE", "snapshot set %s is already frozen" % set_id)

    def frozen(self, set_id, conn, params):
        timer = threading.Timer(self.args.freeze_timeout_ms / 1000.0, self.freeze_timed_out, (set_id, params))
        timer.daemon = True
        with self.lock:
            self.sets[set_id] = ("frozen", conn, timer)
        timer.start()

    def freeze_timed_out(self, set_id, params):
        with self.lock:
            if self.sets.get(set_id, ("none",))[0] != "frozen":
                return
            self.sets[set_id] = ("timedout",)
        log("Thaw for %s did not come within %d ms: aborting" % (set_id, self.args.freeze_timeout_ms))
        self.abort_hook(params)

    def thaw(self, set_id):
        with self.lock:
            entry = self.sets.get(set_id, ("none",))
            if entry[0] == "frozen":
                entry[2].cancel()
                self.sets[set_id] = ("thawed",)
        if entry[0] == "timedout":
            raise WriterFailure("VSS_E_WRITERERROR_TIMEOUT",
                                "Thaw for %s came after the freeze timeout; the writer was aborted" % set_id)
        if entry[0] == "aborted":
            raise WriterFailure("VSS_E_WRITERERROR_NONRETRYABLE", "snapshot set %s was aborted before Thaw" % set_id)

    def abort_event(self, set_id):
        """True if the abort hook must run (at most once per set)."""
        with self.lock:
            entry = self.sets.get(set_id, ("none",))
            if entry[0] in ("aborted", "timedout"):
                return False
            if entry[0] == "frozen":
                entry[2].cancel()
            self.sets[set_id] = ("aborted",)
            return True

    def connection_closed(self, conn):
        """The sets frozen by connection `conn`, now aborted."""
        with self.lock:
            sets = [s for (s, e) in self.sets.items() if e[0] == "frozen" and (conn is None or e[1] == conn)]
            for s in sets:
                self.sets[s][2].cancel()
                self.sets[s] = ("aborted",)
        for s in sets:
            log("the connection that delivered Freeze for %s closed before Thaw: aborting" % s)
            self.abort_hook(None)


def make_writer_class(state):
    """The class implementing vss.Writer's methods (varlink.Service instantiates it without arguments)."""

    def guarded(fn):
        # Any exception other than a varlink error would drop the connection: report it as a failure.
        # functools.wraps keeps the signature visible: the library passes _message/_request only
        # to methods whose signature names them.
        @functools.wraps(fn)
        def wrapper(self, *args, **kwargs):
            try:
                return fn(self, *args, **kwargs)
            except varlink.VarlinkError:
                raise
            except Exception as e:  # noqa: BLE001
                raise WriterFailure("VSS_E_WRITERERROR_NONRETRYABLE", "%s failed: %r" % (fn.__name__, e))
        return wrapper

    def params_of(message):
        return message.get("parameters") or {}

    # Every event method gets the IDL's parameters positionally; _message is the raw call.
    class VssWriter:
        @guarded
        def Identify(self, _message=None):
            state.on_event("Identify", {})
            return {"metadata": state.metadata}

        @guarded
        def PrepareForBackup(self, snapshotSetId, context, backupType, selectComponents, bootableSystemState,
                             partialFileSupport, volumes, components, _message=None):
            state.on_event("PrepareForBackup", params_of(_message))
            return {}

        @guarded
        def PrepareForSnapshot(self, snapshotSetId, context, backupType, selectComponents, bootableSystemState,
                               partialFileSupport, volumes, components, _message=None):
            state.on_event("PrepareForSnapshot", params_of(_message))
            return {}

        @guarded
        def Freeze(self, snapshotSetId, context, backupType, selectComponents, bootableSystemState,
                   partialFileSupport, volumes, components, _message=None, _request=None):
            params = params_of(_message)
            state.begin_freeze(snapshotSetId)  # refused (not logged) for an aborted or frozen set
            state.on_event("Freeze", params)
            if state.args.write_on_freeze:
                write_synced(state.args.write_on_freeze, "freeze")
            state.frozen(snapshotSetId, id(_request), params)
            return {}

        @guarded
        def Thaw(self, snapshotSetId, context, backupType, selectComponents, bootableSystemState,
                 partialFileSupport, volumes, components, _message=None):
            state.thaw(snapshotSetId)
            state.on_event("Thaw", params_of(_message))
            if state.args.write_on_thaw:
                write_synced(state.args.write_on_thaw, "thaw")
            return {}

        @guarded
        def PostSnapshot(self, snapshotSetId, context, backupType, selectComponents, bootableSystemState,
                         partialFileSupport, volumes, components, _message=None):
            state.on_event("PostSnapshot", params_of(_message))
            return {}

        @guarded
        def Abort(self, snapshotSetId, context, backupType, selectComponents, bootableSystemState,
                  partialFileSupport, volumes, components, _message=None):
            if state.abort_event(snapshotSetId):
                state.abort_hook(params_of(_message))
            return {}

        @guarded
        def BackupComplete(self, snapshotSetId, context, backupType, selectComponents, bootableSystemState,
                           partialFileSupport, volumes, components, _message=None):
            state.on_event("BackupComplete", params_of(_message))
            return {}

        @guarded
        def BackupShutdown(self, snapshotSetId, _message=None):
            state.on_event("BackupShutdown", {"snapshotSetId": snapshotSetId})
            return {}

        @guarded
        def PreRestore(self, snapshotSetId, context, backupType, selectComponents, bootableSystemState,
                       partialFileSupport, volumes, components, _message=None):
            state.on_event("PreRestore", params_of(_message))
            return {}

        @guarded
        def PostRestore(self, snapshotSetId, context, backupType, selectComponents, bootableSystemState,
                        partialFileSupport, volumes, components, _message=None):
            state.on_event("PostRestore", params_of(_message))
            return {}

    return VssWriter


def peer_uid(sock):
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


def main(argv=None):
    args = parse_args(argv)
    state = WriterState(args)
    interface = os.path.abspath(args.interface)

    service = varlink.Service(
        vendor="vss for Linux",
        product="vss_writer.py",
        version="1",
        url="https://example.invalid/vss",
        interface_dir=os.path.dirname(interface),
    )
    # An absolute path loads that very file (the file name need not be vss.Writer.varlink).
    service.interface(interface)(make_writer_class(state))

    class Handler(varlink.RequestHandler):
        def handle(self):
            uid = peer_uid(self.request)
            if uid != 0 and uid != args.coordinator_uid:
                log("refused a connection from uid %d (neither root nor the coordinator)" % uid)
                return
            try:
                super().handle()
            finally:
                # EOF or error: a set this connection froze and did not thaw is aborted now.
                state.connection_closed(id(self.request))

    Handler.service = service

    class Server(varlink.ThreadingServer):
        daemon_threads = True  # a hung handler must not keep the process alive
        block_on_close = False  # nor block shutdown

    os.makedirs(args.writers_dir, mode=0o755, exist_ok=True)
    path = os.path.join(os.path.abspath(args.writers_dir), args.name + ".sock")
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)  # stale socket
    except FileNotFoundError:
        pass

    # ';mode=0600' makes the library chmod the socket right after bind.
    server = Server("unix:%s;mode=0600" % path, Handler)

    def stop(signum, _frame):
        raise KeyboardInterrupt("signal %d" % signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("ready %s" % path, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log("shutting down")
    finally:
        state.connection_closed(None)  # still frozen at exit: abort
        server.server_close()  # removes the socket
    return 0


if __name__ == "__main__":
    sys.exit(main())

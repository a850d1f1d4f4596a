"""Patient, study, equipment and acquisition context of each acquisition: configuration defaults,
the acquisition facts configured for the frame's source, what the console set for the next
patient, and what the frame's own context names (docs/frame-protocol.md). Every value from
outside is checked by modgate.dicom.vr; a bad one refuses the frame, it is never changed.

A *study* is one acquisition session (docs/conformance-statement.md, Study grouping): it starts
with the first acquisition after boot, after `study new` or `patient next|clear` on the console,
when patient ID, name or accession number change, when a frame names another Study Instance UID,
or when no acquisition came for `study_timeout_s`. Study Instance UID, Date and Time stay the same
within it.

A worklist item (modgate.worklist) gives the patient and the study: the one the frame names by
`scheduled_step_id` or `accession_number` (when it names no patient of its own), else the one
selected on the console, which holds until `worklist clear`, `study new`, `patient next|clear`,
or `study_timeout_s` without an acquisition. A frame that names its own patient takes none.
"""

from modgate import VERSION
from modgate.compat import ticks_diff, ticks_ms
from modgate.errors import FrameError
from modgate.ingest.frameproto import NAK_BAD_VALUE, NAK_WORKLIST
from modgate.port import clock

# Acquisition facts: what a source's images are (calibration, annotation, how they were made).
# They come from the frame context, else `source_facts` for the source, else the built-in ones.
FACT_KEYS = (
    "modality",
    "body_part",
    "laterality",
    "patient_orientation",
    "burned_in_annotation",
    "conversion_type",
    "pixel_spacing",
    "pixel_aspect_ratio",
    "frame_time_ms",
    "detector_type",
    "pixel_intensity_relationship",
)
# What a frame's context may set (docs/frame-protocol.md); equipment identity is the device's own.
# Written out in full (the facts last) so the tuple is a constant, in flash when frozen.
HEADER_CONTEXT_KEYS = (
    "patient_name",
    "patient_id",
    "patient_birth_date",
    "patient_sex",
    "accession_number",
    "referring_physician",
    "study_instance_uid",
    "series_instance_uid",
    "study_id",
    "study_date",
    "study_time",
    "study_description",
    "series_description",
    "institution_name",
    "station_name",
    "image_comments",
    "modality",
    "body_part",
    "laterality",
    "patient_orientation",
    "burned_in_annotation",
    "conversion_type",
    "pixel_spacing",
    "pixel_aspect_ratio",
    "frame_time_ms",
    "detector_type",
    "pixel_intensity_relationship",
)
# The console's `patient next` field names -> writer context keys.
PATIENT_FIELD_KEYS = {
    "name": "patient_name",
    "id": "patient_id",
    "birth_date": "patient_birth_date",
    "sex": "patient_sex",
    "accession": "accession_number",
}
# Kinds of source (the part of a source id before ":"), and what the device itself knows of each:
# the frame protocol and file drop hand over digital pixels (Conversion Type DI, PS3.3
# C.8.6.1); the test pattern is drawn by the device (synthetic, no burned-in text).
SOURCE_KINDS = ("tcp", "uart", "file", "testpattern")


def source_kind(source):
    return str(source or "").split(":")[0]


def check_source_facts(value):
    """`source_facts` setting: {"tcp": {fact: value}, "uart": ..., "tcp:HOST": ...}, checked;
    ValueError with the reason."""
    from modgate.dicom import vr  # loaded when first needed, not at boot (RAM)

    if not isinstance(value, dict):
        raise ValueError("expected a JSON object {source: {fact: value}}")
    out = {}
    for source in value:
        facts = value[source]
        if source_kind(source) not in SOURCE_KINDS or (":" in source and source_kind(source) != "tcp"):
            raise ValueError("unknown source '%s' (tcp, uart, file, testpattern or tcp:HOST)" % source[:24])
        if not isinstance(facts, dict):
            raise ValueError(source + ": expected an object {fact: value}")
        for key in facts:
            if key not in FACT_KEYS:
                raise ValueError(source + ": unknown fact '" + str(key)[:32] + "'")
            vr.check_field(key, facts[key])
        out[source] = dict(facts)
    return out


def check_frame_context(context):
    """Raise FrameError(NAK_BAD_VALUE) naming the first context value that cannot be written."""
    from modgate.dicom import vr

    for key in HEADER_CONTEXT_KEYS + ("scheduled_step_id",):  # that one names a worklist item
        value = context.get(key)
        if value is not None:
            why = vr.field_problem(key, value)
            if why:
                raise FrameError(why, NAK_BAD_VALUE)


class Contexts:
    """Patient, study and equipment context for the next acquisition (config defaults + console)."""

    def __init__(self, device):
        self.device = device
        self.pending_patient = {}
        self.study_uid = None  # None: the next acquisition starts a new study
        self.study_key = None
        self.study_started = None
        self.last_ticks = None
        self.study_extra = None  # what every object of the study carries of its procedure step

    def new_study(self):
        """Console `study new`: the next acquisition opens a new study (and no worklist item
        carries over into it)."""
        self.study_uid = None
        worklist = self.device.worklist()
        if worklist is not None:
            worklist.clear("ended: new study")

    def facts_for(self, source):
        """The acquisition facts configured for `source` (most specific last wins)."""
        kind = source_kind(source)
        if kind == "testpattern":
            facts = {"conversion_type": "SYN", "burned_in_annotation": "NO"}
        elif kind in SOURCE_KINDS:
            facts = {"conversion_type": "DI"}
        else:
            facts = {}
        configured = self.device.config.get("source_facts") or {}
        for name in (kind, _host_key(source)):
            if name and name in configured:
                for key in configured[name]:
                    facts[key] = configured[name][key]
        return facts

    def for_acquisition(self, header_context, source=""):
        """The writer context of a new acquisition; FrameError(NAK_BAD_VALUE) on a bad value."""
        if header_context:
            check_frame_context(header_context)
        cfg = self.device.config
        context = {
            "patient_name": cfg.get("default_patient_name"),
            "patient_id": cfg.get("default_patient_id"),
            "patient_birth_date": cfg.get("default_patient_birth_date"),
            "patient_sex": cfg.get("default_patient_sex"),
            "accession_number": "",
            "institution_name": cfg.get("institution_name"),
            "station_name": cfg.get("station_name"),
            "modality": cfg.get("modality"),
            "patient_orientation": cfg.get("patient_orientation"),
            # The board's id (a short code, e.g. pico-w): its descriptive name may exceed LO's 64.
            "model_name": self.device.board.get("id", "modgate"),
            "device_serial": self.device.serial,
            "software_version": VERSION,
            "tz": cfg.get("timezone"),
        }
        facts = self.facts_for(source)
        for key in facts:
            context[key] = facts[key]
        for key, value in self.pending_patient.items():
            context[key] = value
        fields = self._worklist_fields(header_context)
        if fields is not None:
            for key in fields:
                context[key] = fields[key]
        if header_context:
            for key in HEADER_CONTEXT_KEYS:
                value = header_context.get(key)
                if value is not None:
                    context[key] = value
        now = clock.now()
        self._study(context, now)
        context["now"] = now
        context["clock_set"] = clock.is_set()
        if not context["clock_set"]:
            self.device.note_clock_unset()
        return context

    def _worklist_fields(self, header_context):
        """The context fields of the worklist item this acquisition takes (the module docstring
        says which), or None; FrameError(NAK_WORKLIST) when the frame names one the device
        cannot use."""
        worklist = self.device.worklist()
        ctx = header_context or {}
        if ctx.get("patient_id") or ctx.get("patient_name"):
            return None
        for key in ("scheduled_step_id", "accession_number"):
            value = ctx.get(key)
            if not value or (worklist is None and key == "accession_number"):
                continue
            if worklist is None:
                raise FrameError("scheduled_step_id names a worklist item, but no worklist is configured",
                                 NAK_WORKLIST)
            item = worklist.find(key, value)
            if item is None:
                header = worklist.header() or {}
                raise FrameError("no worklist item has %s %s (%d cached, refreshed %s)" % (
                    key, value, header.get("items", 0), header.get("utc", "never")), NAK_WORKLIST)
            from modgate.dicom import mwl

            try:
                why = mwl.problem(item)
                if why:
                    raise FrameError("worklist item %d: %s" % (item["n"], why), NAK_WORKLIST)
                return mwl.context_of(item)
            finally:
                if not worklist.running:  # a refresh under way unloads them when it ends
                    from modgate.worklist import unload_dicom

                    unload_dicom()
        if worklist is None or not worklist.has_selection:
            return None
        timeout_ms = (self.device.config.get("study_timeout_s") or 0) * 1000
        since = worklist.selected_ticks
        if self.last_ticks is not None and (since is None or ticks_diff(self.last_ticks, since) > 0):
            since = self.last_ticks
        if timeout_ms and since is not None and ticks_diff(ticks_ms(), since) >= timeout_ms:
            worklist.clear("expired: no acquisition for study_timeout_s")
            return None
        selected = worklist.selected()
        return None if selected is None else selected["context"]

    def _study(self, context, now):
        key = (context.get("patient_id"), context.get("patient_name"), context.get("accession_number"))
        given = context.get("study_instance_uid")
        ticks = ticks_ms()
        timeout_ms = (self.device.config.get("study_timeout_s") or 0) * 1000
        idle = self.last_ticks is not None and timeout_ms and ticks_diff(ticks, self.last_ticks) >= timeout_ms
        # A study the frame names keeps its date and time for as long as frames name it.
        if given:
            new = given != self.study_uid
        else:
            new = self.study_uid is None or key != self.study_key or idle
        if new:
            self.study_uid = given or self.device.uid_gen.new()
            self.study_key = key
            self.study_started = now
        self.last_ticks = ticks
        context["study_instance_uid"] = self.study_uid
        context["study_started"] = self.study_started
        if new:
            # Its Modality Performed Procedure Step starts here (modgate.mpps), when one is kept.
            self.study_extra = self.device.study_started(context, now)
        if self.study_extra:
            context.update(self.study_extra)


def _host_key(source):
    """"tcp:HOST" for a TCP source id "tcp:HOST:PORT" (the port changes with every connection)."""
    parts = str(source or "").split(":")
    return "tcp:" + parts[1] if parts[0] == "tcp" and len(parts) > 2 else ""

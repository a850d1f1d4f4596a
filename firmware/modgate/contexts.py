"""Patient, study and equipment context of the next acquisition: configuration defaults, what the
console set for the next patient, and what a frame's own context names (docs/frame-protocol.md)."""

from modgate import VERSION
from modgate.port import clock

# What a frame's context may set (docs/frame-protocol.md); equipment identity is the device's own.
HEADER_CONTEXT_KEYS = (
    "patient_name",
    "patient_id",
    "patient_birth_date",
    "patient_sex",
    "accession_number",
    "study_instance_uid",
    "series_instance_uid",
    "study_description",
    "series_description",
    "referring_physician",
    "body_part",
    "modality",
    "institution_name",
    "station_name",
)
# The console's `patient next` field names -> writer context keys.
PATIENT_FIELD_KEYS = {
    "name": "patient_name",
    "id": "patient_id",
    "birth_date": "patient_birth_date",
    "sex": "patient_sex",
    "accession": "accession_number",
}


class Contexts:
    """Patient, study and equipment context for the next acquisition (config defaults + console)."""

    def __init__(self, device):
        self.device = device
        self.pending_patient = {}
        self.study_uid = None
        self.study_key = None

    def for_acquisition(self, header_context):
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
            "model_name": self.device.board.get("name", "modgate"),
            "device_serial": self.device.serial,
            "software_version": VERSION,
        }
        for key, value in self.pending_patient.items():
            context[key] = value
        if header_context:
            for key in HEADER_CONTEXT_KEYS:
                value = header_context.get(key)
                if isinstance(value, str):
                    context[key] = value
        key = (context.get("patient_id"), context.get("patient_name"), context.get("accession_number"))
        if context.get("study_instance_uid"):
            self.study_uid = context["study_instance_uid"]
            self.study_key = key
        elif self.study_uid is None or key != self.study_key:
            self.study_uid = self.device.uid_gen.new()
            self.study_key = key
        context["study_instance_uid"] = self.study_uid
        context["now"] = clock.now()
        context["clock_set"] = clock.is_set()
        if not context["clock_set"]:
            self.device.note_clock_unset()
        return context

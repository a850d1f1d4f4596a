"""Every context field, value by value: accepted as it is, or refused with its reason (PS3.5 6.2,
9.1; PS3.3 enumerated values). Nothing is ever changed to make it fit."""

import unittest

from modgate.dicom import vr

# (field, value, None when accepted or a piece of the reason)
TABLE = (
    ("patient_name", "Doe^Jane", None),
    ("patient_name", "Müller^Zoë", None),
    ("patient_name", "Yamada^Tarou=山田^太郎", None),
    ("patient_name", "", None),
    ("patient_name", "A^B^C^D^E^F", "5 components"),
    ("patient_name", "a=b=c=d", "3 component groups"),
    ("patient_name", "X" * 65, "64 bytes"),
    ("patient_name", "Doe\\Jane", "backslash"),
    ("patient_name", "Doe\nJane", "control"),
    ("patient_id", "ID-0042", None),
    ("patient_id", "ID\\1", "backslash"),
    ("patient_id", "P" * 64, None),
    ("patient_id", "P" * 65, "64 bytes"),
    ("patient_id", "é" * 33, "64 bytes"),
    ("patient_birth_date", "19991231", None),
    ("patient_birth_date", "20000229", None),
    ("patient_birth_date", "19000229", "calendar"),
    ("patient_birth_date", "19991301", "calendar"),
    ("patient_birth_date", "19990132", "calendar"),
    ("patient_birth_date", "1999-12-31", "YYYYMMDD"),
    ("patient_birth_date", "１９９９１２３１", "ASCII"),
    ("patient_sex", "M", None),
    ("patient_sex", "F", None),
    ("patient_sex", "O", None),
    ("patient_sex", "", None),
    ("patient_sex", "male", "M, F or O"),
    ("patient_sex", "m", "M, F or O"),
    ("accession_number", "A" * 16, None),
    ("accession_number", "A" * 17, "16 bytes"),
    ("scheduled_step_id", "SPS-0001", None),
    ("scheduled_step_id", "S\\1", "backslash"),
    ("referring_physician", "Who^Doc", None),
    ("study_instance_uid", "1.2.840.10008.99", None),
    ("study_instance_uid", "2.25.1", None),
    ("study_instance_uid", "1.2.3.04.abc", "UID"),
    ("study_instance_uid", "1.2.3.04", "leading zero"),
    ("study_instance_uid", "1..2", "single dots"),
    ("study_instance_uid", "1.2.", "single dots"),
    ("study_instance_uid", "1." + "2" * 63, "64"),
    ("study_instance_uid", "3.1", "0, 1 or 2"),
    ("series_instance_uid", "1.2.3", None),
    ("series_instance_uid", "1.2.3 ", "single dots"),
    ("study_id", "S1", None),
    ("study_id", "S" * 17, "16 bytes"),
    ("study_date", "20260101", None),
    ("study_date", "2026011", "YYYYMMDD"),
    ("study_time", "0815", None),
    ("study_time", "081500.123456", None),
    ("study_time", "235960", None),
    ("study_time", "2400", "time of day"),
    ("study_time", "0860", "time of day"),
    ("study_time", "08:15", "HHMMSS"),
    ("study_time", "081500.1234567", "FFFFFF"),
    ("study_description", "Chest PA", None),
    ("study_description", "Chest\\PA", "backslash"),
    ("series_description", "cine 1", None),
    ("modality", "XA", None),
    ("modality", "US", None),
    ("modality", "OT", None),
    ("modality", "ot", "code string"),
    ("modality", "XX", "defined term"),
    ("modality", "CD", "defined term"),  # retired (PS3.3 C.7.3.1.1.1)
    ("body_part", "CHEST", None),
    ("body_part", "chest", "code string"),
    ("body_part", "KNEE-L", "code string"),
    ("laterality", "R", None),
    ("laterality", "L", None),
    ("laterality", "U", None),
    ("laterality", "B", None),
    ("laterality", "r", "R, L, U or B"),
    ("laterality", "RIGHT", "R, L, U or B"),
    ("institution_name", "General Hospital", None),
    ("institution_name", "Hôpital Général", None),
    ("station_name", "CATH1", None),
    ("station_name", "STATION-NAME-17CH", "16 bytes"),
    ("patient_orientation", "A\\F", None),
    ("patient_orientation", "AL\\HP", None),
    ("patient_orientation", "A", "2 values"),
    ("patient_orientation", "A\\X", "A P R L H F"),
    ("image_comments", "two\\lines\r\nok", None),
    ("image_comments", "bell\x07", "control"),
    ("burned_in_annotation", "YES", None),
    ("burned_in_annotation", "NO", None),
    ("burned_in_annotation", "no", "YES or NO"),
    ("burned_in_annotation", "UNKNOWN", "YES or NO"),
    ("conversion_type", "DV", None),
    ("conversion_type", "SYN", None),
    ("conversion_type", "XYZ", "DV, DI"),
    ("pixel_spacing", "0.1\\0.1", None),
    ("pixel_spacing", "1.5E-1\\.15", None),
    ("pixel_spacing", " 0.2\\0.2 ", None),
    ("pixel_spacing", "0.1", "2 values"),
    ("pixel_spacing", "0\\0.1", "greater than 0"),
    ("pixel_spacing", "0,1\\0,1", "decimal"),
    ("pixel_spacing", "1 0\\1", "decimal"),
    ("pixel_spacing", "0.12345678901234567\\1", "16 bytes"),
    ("pixel_aspect_ratio", "4\\3", None),
    ("pixel_aspect_ratio", "4.0\\3", "whole number"),
    ("pixel_aspect_ratio", "0\\1", "greater than 0"),
    ("frame_time_ms", "33.333", None),
    ("frame_time_ms", "40", None),
    ("frame_time_ms", "0", "greater than 0"),
    ("frame_time_ms", "fast", "decimal"),
    ("detector_type", "SCINTILLATOR", None),
    ("detector_type", "CCD", "DIRECT"),
    ("pixel_intensity_relationship", "LIN", None),
    ("pixel_intensity_relationship", "SQRT", "LIN or LOG"),
)


class TestFields(unittest.TestCase):
    def test_every_value_of_the_table(self):
        for key, value, reason in TABLE:
            why = vr.field_problem(key, value)
            if reason is None:
                self.assertIsNone(why, "%s=%r refused: %s" % (key, value, why))
            else:
                self.assertTrue(why and why.startswith(key + ": ") and reason in why,
                                "%s=%r: %r lacks %r" % (key, value, why, reason))
                # The reason fits a frame protocol NAK text (64 bytes) with room to spare.
                self.assertTrue(len(why.encode()) <= 64, why)

    def test_every_field_has_accepted_and_refused_values(self):
        fields = [line.split(" ")[0] for line in vr.FIELDS.split("\n")]
        for key in fields:
            outcomes = set(reason is None for k, _, reason in TABLE if k == key)
            if key not in ("referring_physician", "series_description", "institution_name"):
                self.assertEqual(outcomes, {True, False}, key)
            else:
                self.assertIn(True, outcomes, key)

    def test_check_field_and_types(self):
        self.assertEqual(vr.check_field("patient_sex", "F"), "F")
        with self.assertRaises(ValueError) as cm:
            vr.check_field("patient_sex", "x")
        self.assertEqual(str(cm.exception), "patient_sex: must be M, F or O")
        self.assertEqual(vr.field_problem("patient_id", 42), "patient_id: expected text")
        self.assertEqual(vr.field_problem("shoe_size", "42"), "shoe_size: not a context field")
        self.assertEqual(vr.field_vr("patient_birth_date"), "DA")
        self.assertIsNone(vr.field_vr("patient"))


class TestVr(unittest.TestCase):
    def test_single_vrs(self):
        self.assertIsNone(vr.problem("IS", "-2147483648"))
        self.assertIn("range", vr.problem("IS", "2147483648"))
        self.assertIsNone(vr.problem("DS", "-1.5e+3"))
        self.assertIn("decimal", vr.problem("DS", "1e"))
        self.assertIn("decimal", vr.problem("DS", "."))
        self.assertIn("ASCII", vr.problem("CS", "É"))
        self.assertIsNone(vr.problem("LT", "a\\b"))
        self.assertIsNone(vr.problem("CS", "A\\B\\C", 0))
        self.assertEqual(vr.problem("CS", "A\\B"), "backslash not allowed")
        self.assertEqual(vr.problem("DS", "1\\2\\3", 2), "expected 2 values separated by \\")
        self.assertIn("backslash", vr.problem("LO", "a\\b"))
        self.assertIn("control", vr.problem("SH", "a\x85b"))

    def test_timezone_offsets(self):
        for ok in ("+0000", "-1200", "+1400", "+0530", "-0930"):
            self.assertIsNone(vr.tz_problem(ok), ok)
        for bad in ("0100", "+100", "+1401", "-1201", "+0160", "+01:00", "UTC"):
            self.assertTrue(vr.tz_problem(bad), bad)

    def test_uids(self):
        self.assertIsNone(vr.uid_problem("0.0"))
        self.assertIsNone(vr.uid_problem("1.2.840.10008.1.2.1"))
        self.assertTrue(vr.uid_problem(""))
        self.assertTrue(vr.uid_problem("1.2.abc"))


if __name__ == "__main__":
    unittest.main()

"""The presentation contexts the device proposes, in the order and with the IDs the conformance
statement lists (PS3.8 9.3.2.2): checked on MicroPython too, whose dicts keep no order, by
reading the statement's table as data."""

import unittest

import support
from modgate.dicom import iods
from modgate.net import VERIFICATION, scu, storage_classes
from modgate.net.find import MODALITY_WORKLIST_FIND


def statement_table(name):
    """Rows (lists of cells) of the table marked `<!-- check: name -->` in the statement."""
    root = support.__file__.rsplit("/", 3)[0]
    with open(root + "/docs/conformance-statement.md") as f:
        lines = f.read().split("\n")
    start = lines.index("<!-- check: " + name + " -->")
    rows = []
    for line in lines[start + 3:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


class TestContextOrder(unittest.TestCase):
    def test_proposal_is_the_statements_table_in_order(self):
        documented = [(int(r[0]), r[2], r[3]) for r in statement_table("presentation-contexts")]
        proposed = [(cid, uid, syntaxes[0]) for cid, uid, syntaxes in scu.proposal(storage_classes())]
        self.assertEqual(proposed, documented)

    def test_storage_classes_follow_the_fixed_name_order(self):
        self.assertEqual(list(iods.STORAGE_SOP_CLASSES), [iods.IODS[n]["sop_class_uid"] for n in iods.NAMES])
        self.assertEqual(sorted(iods.NAMES), sorted(iods.IODS))
        self.assertEqual(storage_classes(), list(iods.STORAGE_SOP_CLASSES) + [VERIFICATION])
        documented = [r[2] for r in statement_table("sop-classes")]
        # The statement's table also lists the worklist query's class (not a storage class).
        self.assertEqual(documented, list(iods.STORAGE_SOP_CLASSES) + [MODALITY_WORKLIST_FIND, VERIFICATION])


if __name__ == "__main__":
    unittest.main()

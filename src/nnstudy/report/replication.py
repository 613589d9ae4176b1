"""placeholder"""
def write_replication(out, reference_numbers=None, create=True):
    raise NotImplementedError
def replication_rows(out, reference_numbers=None):
    raise NotImplementedError

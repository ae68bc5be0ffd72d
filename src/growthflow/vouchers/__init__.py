"""Voucher segmentation: clean assignments, count vouchers per segment, serve the winner."""

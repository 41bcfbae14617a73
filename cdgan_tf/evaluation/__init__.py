"""Evaluation: the streaming loop, the accuracy table, the reports and the sample grid."""

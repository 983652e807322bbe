"""Where a study lives and who works on it: the storage (opened once, checked before any
write), helper worker processes, and recovery of trials whose worker died."""

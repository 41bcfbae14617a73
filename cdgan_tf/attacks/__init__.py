"""Attacks: gradient attacks (FGSM, PGD, MI-FGSM), one attack-settings module, BPDA,
perturbation statistics, and the DAmageNet-style transfer-set generator."""

"""PAFT: parallel SFT and preference training from one base, merged and evaluated."""

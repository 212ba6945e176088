"""gateskip.synth"""

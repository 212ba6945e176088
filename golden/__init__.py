"""gateskip.golden"""

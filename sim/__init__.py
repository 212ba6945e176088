"""gateskip.sim"""

"""The plugin's dock widgets (Qt). Each module holds one widget; shared parts are private.

Nothing here is imported when the plugin is loaded: napari imports a widget's module when the
user opens it from the Plugins menu.
"""

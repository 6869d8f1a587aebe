"""The components, one module (or package) per service. Each defines `COMPONENTS`;
registry.py discovers them (and a site's own, through the `mmdeploy.components` entry
point) and orders them by their `after` dependencies."""

"""The dashboard and alert definitions, one module per job; ``dashboards.panels`` gathers them.

``model``: the dataclasses; ``filters``: the SQL building blocks (template-variable filters);
``variables``: the dashboard variables; ``overview``, ``workflow``, ``failures``, ``queue``,
``pipeline``: one dashboard each; ``alerts``: the alert rules and their notification settings.
"""

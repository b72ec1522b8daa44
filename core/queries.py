from django.apps import apps


def overview_counts() -> list[tuple[str, int]]:
    """Row counts for the home page, for every domain model that exists so far."""
    counts = []
    for app_label in ("knowledge", "sessions_app", "dispatch"):
        for model in apps.get_app_config(app_label).get_models():
            counts.append(
                (str(model._meta.verbose_name_plural).capitalize(), model.objects.count())
            )
    return counts

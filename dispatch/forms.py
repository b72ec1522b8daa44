"""Forms for the Cases pages: they check the shape of input; the services decide the rest."""

from django import forms

from dispatch.models import CardStatus, Symptom


class ProblemCardForm(forms.Form):
    customer_name = forms.CharField(label="Customer", max_length=200)
    customer_phone = forms.CharField(label="Phone", max_length=40, required=False)
    address = forms.CharField(max_length=500, required=False)
    service_area = forms.CharField(
        label="Service area", max_length=100, required=False, help_text="e.g. Taipei Da'an"
    )
    brand = forms.CharField(max_length=100)
    lock_model = forms.CharField(label="Model", max_length=100, required=False)
    symptom = forms.ChoiceField(choices=Symptom.choices)
    error_code = forms.CharField(
        label="Error code", max_length=40, required=False, help_text="As shown: E21, e-21…"
    )
    description = forms.CharField(strip=False, widget=forms.Textarea(attrs={"rows": 4}))
    diagnose = forms.BooleanField(label="Diagnose now", required=False, initial=True)


class CardFilterForm(forms.Form):
    status = forms.ChoiceField(choices=[("", "Any status"), *CardStatus.choices], required=False)
    brand = forms.CharField(max_length=100, required=False)
    q = forms.CharField(label="Search", max_length=200, required=False)


class ResolveForm(forms.Form):
    resolution = forms.CharField(strip=False, widget=forms.Textarea(attrs={"rows": 3}))
    root_cause = forms.CharField(label="Root cause", max_length=5000, required=False)
    parts_used = forms.CharField(label="Parts used", max_length=2000, required=False)


class OrderStepForm(forms.Form):
    """One step of an order; which fields a step needs is the service's rule."""

    to = forms.CharField(max_length=12)
    version = forms.IntegerField(min_value=1)
    technician_id = forms.IntegerField(required=False)
    eta = forms.DateTimeField(required=False)
    note = forms.CharField(max_length=2000, required=False)
    work_done = forms.CharField(strip=False, required=False, widget=forms.Textarea)
    parts_used = forms.CharField(max_length=2000, required=False)
    diagnosis_matched = forms.NullBooleanField(required=False)


class OrderLineForm(forms.Form):
    item_code = forms.CharField(label="Item", max_length=40)
    quantity = forms.DecimalField(max_digits=8, decimal_places=2, initial=1)


class InvoiceForm(forms.Form):
    buyer_name = forms.CharField(label="Buyer", max_length=200)
    buyer_tax_id = forms.CharField(
        label="Tax ID (統一編號)", max_length=8, required=False, help_text="Optional, 8 digits."
    )


class OrderNewForm(forms.Form):
    address = forms.CharField(max_length=500)
    scheduled_start = forms.DateTimeField(label="From", required=False)
    scheduled_end = forms.DateTimeField(label="Until", required=False)


class PhotoForm(forms.Form):
    # Any file is taken here: the service decides from its bytes whether it is an image.
    file = forms.FileField(
        label="Photo", widget=forms.ClearableFileInput(attrs={"accept": "image/*"})
    )


class CaseCurateForm(forms.Form):
    resolution = forms.CharField(strip=False, widget=forms.Textarea(attrs={"rows": 3}))
    root_cause = forms.CharField(label="Root cause", max_length=5000, required=False)
    parts_used = forms.CharField(label="Parts used", max_length=2000, required=False)
    is_case_enabled = forms.BooleanField(
        label="Use as a case (diagnosis, search and ask)", required=False
    )

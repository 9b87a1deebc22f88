"""The project audit timeline page, with its filters and the chain's verification status."""

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.functional import cached_property

from audits.models import Action, AuditChain, AuditEvent
from audits.selectors import audit_timeline
from audits.verification import verify_latest
from governance.models import Project, User
from governance.permissions import project_access
from governance.selectors import memberships_of_project, project_get_for_user


class TimelineFilter(forms.Form):
    actor = forms.ModelChoiceField(queryset=None, required=False, empty_label="Anyone")
    action = forms.ChoiceField(required=False, choices=[("", "Any action"), *Action.choices])
    target_type = forms.CharField(
        required=False, label="Object type", help_text="e.g. lifecycle.gate"
    )
    since = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    until = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )

    def __init__(self, *args, project: Project, **kwargs):
        super().__init__(*args, **kwargs)
        members = memberships_of_project(project).values("user")
        self.fields["actor"].queryset = User.objects.filter(pk__in=members).order_by("last_name")


class ChainPaginator(Paginator):
    """Pages of a whole chain, newest first, found by sequence number.

    A chain's events are numbered 1 to its length, so page n is a range of sequence numbers:
    no COUNT over the chain and no OFFSET past the pages before, whatever its length.
    """

    def __init__(self, events: QuerySet[AuditEvent], per_page: int, *, length: int) -> None:
        super().__init__(events, per_page)
        self.length = length

    @cached_property
    def count(self) -> int:
        return self.length

    def page(self, number: int | str) -> Page:
        number = self.validate_number(number)
        top = self.length - (number - 1) * self.per_page
        events = self.object_list.filter(sequence__lte=top, sequence__gt=top - self.per_page)
        return self._get_page(events, number, self)


@login_required
def timeline(request: HttpRequest, slug: str) -> HttpResponse:
    """Who did what, when, from where, and why — newest first — and whether the chain holds."""
    try:
        project = project_get_for_user(request.user, slug)
    except Project.DoesNotExist:
        raise Http404("No such project.") from None
    access = project_access(request.user, project)
    if not access.can("view_audit"):
        raise PermissionDenied("Your roles on this project do not include reading its audit trail.")
    form = TimelineFilter(request.GET or None, project=project)
    filters = form.cleaned_data if form.is_bound and form.is_valid() else {}
    events = audit_timeline(
        request.user, project=project, **{k: v for k, v in filters.items() if v}
    )
    chain = AuditChain.objects.filter(project=project).first()
    if chain is not None and not any(filters.values()):
        paginator: Paginator = ChainPaginator(events, 50, length=chain.length)
    else:
        paginator = Paginator(events, 50)
    page = paginator.get_page(request.GET.get("page"))
    status = verify_latest(chain) if chain else None
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "audits/timeline.html",
        {
            "project": project,
            "access": access,
            "form": form,
            "page": page,
            "chain": chain,
            "status": status,
            "query": query.urlencode(),
        },
    )

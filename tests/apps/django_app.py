"""A single-file Django project for the framework suite (tests/test_frameworks.py), configured
with ``settings.configure``: no database, no CSRF middleware."""

from __future__ import annotations

import hashlib
import tempfile

from django.conf import settings

from apps.gate import gated_chunks

settings.configure(
    DEBUG=False,
    SECRET_KEY="test-only",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    DATABASES={},
    USE_TZ=True,
    FILE_UPLOAD_TEMP_DIR=tempfile.gettempdir(),
)

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import (  # noqa: E402
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import path, reverse  # noqa: E402


def form(request: HttpRequest) -> JsonResponse:
    if request.method != "POST":
        return JsonResponse({"error": "POST only"}, status=405)
    return JsonResponse({"name": request.POST["name"], "tags": request.POST.getlist("tag")})


def upload(request: HttpRequest) -> JsonResponse:
    f = request.FILES["file"]
    digest = hashlib.sha256()
    size = 0
    for chunk in f.chunks():
        digest.update(chunk)
        size += len(chunk)
    return JsonResponse(
        {
            "filename": f.name,
            "size": size,
            "sha256": digest.hexdigest(),
            "note": request.POST.get("note"),
        }
    )


def stream(request: HttpRequest) -> StreamingHttpResponse:
    """Three chunks; after the first, waits (at most 10 s) for the file named by ``gate``."""
    gate = request.GET.get("gate", "")

    return StreamingHttpResponse(gated_chunks(gate), content_type="text/plain")


def go(request: HttpRequest) -> HttpResponseRedirect:
    return HttpResponseRedirect(request.build_absolute_uri(reverse("done")))


def done(request: HttpRequest) -> HttpResponse:
    return HttpResponse("done", content_type="text/plain")


def url(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "external": request.build_absolute_uri(reverse("url")),
            "path": reverse("url"),
            "scheme": request.scheme,
            "host": request.get_host(),
            "is_secure": request.is_secure(),
            "script_name": request.META.get("SCRIPT_NAME"),
            "full_url": request.build_absolute_uri(),
        }
    )


def client(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"remote_addr": request.META["REMOTE_ADDR"]})


urlpatterns = [
    path("form/", form),
    path("upload/", upload),
    path("stream/", stream),
    path("redirect/", go),
    path("done/", done, name="done"),
    path("url/", url, name="url"),
    path("client/", client),
]

application = get_wsgi_application()

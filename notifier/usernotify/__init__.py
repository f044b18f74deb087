"""Users' own notices (``/notify``): DM, verified e-mail and signed webhook callbacks.

`UserNotifications` (service) is what the ``/notify`` cog and ``notifier users`` call; its
`routes` are handed to the fanout, whose outbox sends users' notices like operators' ones.
"""

from .channels import USER_TEMPLATES, VIAS, ResultLoader, UserChannels
from .mailer import MailFailed, MailRefused, MailServer, mail_server, send_mail
from .service import ChoiceError, UserNotifications, parse_events, parse_workflows
from .verification import VerificationRefused, Verifier, check_address, mask_address
from .webhook import CallbackFailed, CallbackSender, callback_body, check_callback_url, new_secret

__all__ = [
    "USER_TEMPLATES",
    "VIAS",
    "CallbackFailed",
    "CallbackSender",
    "ChoiceError",
    "MailFailed",
    "MailRefused",
    "MailServer",
    "ResultLoader",
    "UserChannels",
    "UserNotifications",
    "VerificationRefused",
    "Verifier",
    "callback_body",
    "check_address",
    "check_callback_url",
    "mail_server",
    "mask_address",
    "new_secret",
    "parse_events",
    "parse_workflows",
    "send_mail",
]

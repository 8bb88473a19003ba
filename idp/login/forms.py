"""Sign-in forms (Flask-WTF: CSRF token bound to the session cookie on every form)."""

from wtforms import EmailField, PasswordField, SubmitField
from wtforms.validators import Length

from ..web.forms import PostedForm


class PasswordForm(PostedForm):
    # No "required" validators: a missing field must get the same answer as a wrong one.
    email = EmailField("Email", validators=[Length(max=320)])
    password = PasswordField("Password", validators=[Length(max=1024)])


class ConsentForm(PostedForm):
    allow = SubmitField("Allow")
    deny = SubmitField("Deny")

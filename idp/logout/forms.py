"""Logout forms (Flask-WTF: the CSRF token is bound to the session cookie)."""

from wtforms import HiddenField, SubmitField
from wtforms.validators import Length

from ..web.forms import PostedForm


class LogoutForm(PostedForm):
    logout_id = HiddenField(validators=[Length(max=64)])
    confirm = SubmitField("Sign out")
    cancel = SubmitField("Stay signed in")


class SignOutEverywhereForm(PostedForm):
    confirm = SubmitField("Sign out everywhere")

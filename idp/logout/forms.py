"""Logout forms (Flask-WTF: the CSRF token is bound to the session cookie)."""

from flask_wtf import FlaskForm
from wtforms import HiddenField, SubmitField
from wtforms.validators import Length


class LogoutForm(FlaskForm):
    logout_id = HiddenField(validators=[Length(max=64)])
    confirm = SubmitField("Sign out")
    cancel = SubmitField("Stay signed in")


class SignOutEverywhereForm(FlaskForm):
    confirm = SubmitField("Sign out everywhere")

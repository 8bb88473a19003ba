"""The base of every HTML form (Flask-WTF: a CSRF token bound to the session cookie).

A browser posts a form urlencoded (or multipart). Flask-WTF would also take a JSON body
as the form's data, with its CSRF token from a header: a body no page of ours sends, whose
values need not even be strings (``[1]`` or ``{"password": {}}`` were 500s). The forms here
read the posted form alone; a JSON body leaves every field empty.
"""

from flask import request
from flask_wtf import FlaskForm


class PostedForm(FlaskForm):
    class Meta(FlaskForm.Meta):
        def wrap_formdata(self, form, formdata):
            if request.is_json:
                formdata = request.form  # empty: never the JSON body
            return super().wrap_formdata(form, formdata)

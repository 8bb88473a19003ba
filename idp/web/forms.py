"""The base of every HTML form (Flask-WTF: a CSRF token bound to the session cookie).

A browser posts a form urlencoded (or multipart). Flask-WTF would also take a JSON body
as the form's data, with its CSRF token from a header: a body no page of ours sends, whose
values need not even be strings (``[1]`` or ``{"password": {}}`` were 500s); and of a
multipart body it takes the files too, so a file part named ``email`` reached the Length
validator as a FileStorage (another 500). The forms here read the posted text fields
alone: a JSON body leaves every field empty, a file part is no field's value.
"""

from flask import request
from flask_wtf import FlaskForm


class PostedForm(FlaskForm):
    class Meta(FlaskForm.Meta):
        def wrap_formdata(self, form, formdata):
            if formdata is not None and form.is_submitted():
                formdata = request.form  # text fields only: never the JSON body, never request.files
            return super().wrap_formdata(form, formdata)

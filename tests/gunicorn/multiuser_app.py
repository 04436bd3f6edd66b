"""A small multi-user Flask app written the way peewee's docs teach, on our pooled class.

Join, log in, post, follow, read a timeline: ``before_request`` connects and
``teardown_request`` closes, exactly as an app written for plain peewee does. The only line
that names this library is the ``database = ...`` one. It is built at import time, so under
``gunicorn --preload`` it exists in the master before a gevent worker patches ``threading``:
the set-up that once served one user's page to another (issue 17).

Every answer carries what the server itself says about the request (the viewer read back
from the database through the request's connection, the connection id), so a test can tell a
page built for another session from the right one.
"""

from __future__ import annotations

import datetime
import os

import peewee
from flask import Flask, abort, jsonify, request, session

from flask_peewee_pool import PooledMySQLDatabase

database = PooledMySQLDatabase(
    os.environ["FPP_MU_DATABASE"],
    host=os.environ.get("FPP_MU_HOST", "127.0.0.1"),
    port=int(os.environ.get("FPP_MU_PORT", "3306")),
    user=os.environ["FPP_MU_USER"],
    password=os.environ.get("FPP_MU_PASSWORD", ""),
    max_connections=int(os.environ.get("FPP_MU_MAX_CONNECTIONS", "4")),
    stale_timeout=3,
    timeout=20,
)


class BaseModel(peewee.Model):
    class Meta:
        database = database


class User(BaseModel):
    username = peewee.CharField(unique=True)


class Relationship(BaseModel):
    from_user = peewee.ForeignKeyField(User, backref="following")
    to_user = peewee.ForeignKeyField(User, backref="followers")

    class Meta:
        indexes = ((("from_user", "to_user"), True),)


class Message(BaseModel):
    user = peewee.ForeignKeyField(User, backref="messages")
    content = peewee.TextField()
    pub_date = peewee.DateTimeField(default=datetime.datetime.now)


MODELS = (User, Relationship, Message)

app = Flask(__name__)
app.secret_key = os.environ.get("FPP_MU_SECRET", "multi-user-test")


@app.before_request
def before_request() -> None:
    database.connect()


@app.teardown_request
def teardown_request(exc: BaseException | None) -> None:
    if not database.is_closed():
        database.close()


def current_user() -> User:
    if "user_id" not in session:
        abort(401)
    return User.get_by_id(session["user_id"])


def whoami() -> dict[str, object]:
    """The viewer as the database sees it, through this request's own connection."""
    row = database.execute_sql(
        "SELECT username, CONNECTION_ID() FROM `user` WHERE id = %s", (session["user_id"],)
    ).fetchone()
    return {"viewer": row[0], "connection_id": int(row[1]), "pid": os.getpid()}


@app.post("/join")
def join() -> object:
    with database.atomic():
        user, _ = User.get_or_create(username=request.form["username"])
    session["user_id"] = user.id
    return jsonify(whoami())


@app.post("/login")
def login() -> object:
    user = User.get_or_none(User.username == request.form["username"])
    if user is None:
        abort(404)
    session["user_id"] = user.id
    return jsonify(whoami())


@app.post("/follow/<username>")
def follow(username: str) -> object:
    me = current_user()
    other = User.get(User.username == username)
    Relationship.insert(from_user=me, to_user=other).on_conflict_ignore().execute()
    return jsonify(whoami())


@app.post("/post")
def post() -> object:
    me = current_user()
    with database.atomic():
        message = Message.create(user=me, content=request.form["content"])
        # Read the row back inside the transaction: a shared connection shows up here.
        author = (User.select(User.username).join(Message)
                  .where(Message.id == message.id).scalar())
    return jsonify({**whoami(), "author": author, "message_id": message.id})


@app.get("/timeline")
def timeline() -> object:
    me = current_user()
    followed = Relationship.select(Relationship.to_user).where(Relationship.from_user == me)
    messages = (Message.select(Message, User).join(User)
                .where((Message.user.in_(followed)) | (Message.user == me))
                .order_by(Message.id.desc()).limit(20))
    return jsonify({**whoami(), "messages": [
        {"author": m.user.username, "content": m.content} for m in messages]})


@app.get("/me")
def me() -> object:
    current_user()
    return jsonify(whoami())

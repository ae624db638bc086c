"""pyinfra's own floor: connect to the host and run one operation that changes nothing."""
from pyinfra.operations import server

server.user(name="root exists (nothing to change)", user="root")

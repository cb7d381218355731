\dt
\d
\d contacts
\d contact_view
\l
\dn
\df
\dv
SELECT version();
\d+ contacts
\d+ contact_view
\dt+
\du

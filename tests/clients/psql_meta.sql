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
CREATE VIEW saved_cities AS SELECT city, count(*) FROM contacts GROUP BY city;
CREATE TABLE city_copy AS SELECT city, count(*) AS n FROM contacts GROUP BY city;
\dv
\d saved_cities
\d city_copy

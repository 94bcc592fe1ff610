DROP TABLE instance_firewalls;

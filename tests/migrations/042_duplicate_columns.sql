UPDATE accounts SET plan = 'a', plan = 'b';
INSERT INTO accounts (email, email) VALUES ('x', 'y');
